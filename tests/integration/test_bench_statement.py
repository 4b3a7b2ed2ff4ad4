"""`vgw bench statement` at a tiny size, on SQLite and on a fresh PostgreSQL database: a year of one agency's
payments paid out through the real batcher, simulated bank and report intake, then the statement timed in
every format, so the benchmark `make bench` runs cannot rot unnoticed."""

from __future__ import annotations

import datetime
import io
import json
import subprocess

import pytest
from pypdf import PdfReader

from adapters.http.query_params import STATEMENT_FORMATS
from adapters.statements.pdf import statement_pdf
from gateway.statements.lines import build_statement
from simulators.bench.statement import pay_days, pdf_pages

from .fresh_postgres import fresh_database
from .test_https_intake import VGW

LINES = 120


def bench(*store: str) -> dict:
    done = subprocess.run([VGW, "bench", "statement", "--lines", str(LINES), "--pay-days", "3", "--repeat", "1",
                           "--year", "2025", *store], capture_output=True, text=True, timeout=180)
    result = json.loads(done.stdout)
    # exit 1 only for a missed target, which says how fast the machine is, not whether the bench works
    assert done.returncode == (0 if result["meets_target"] else 1), done.stderr
    return result


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_tiny_agency_year_is_timed_in_every_format(backend):
    if backend == "sqlite":
        result = bench()
    else:
        with fresh_database("vgw_bench_statement") as url:
            result = bench("--store", url)
            # a second run on the same store would count the year twice: refused, not measured
            again = subprocess.run([VGW, "bench", "statement", "--lines", "5", "--year", "2025", "--store", url],
                                   capture_output=True, text=True, timeout=180)
            assert again.returncode != 0 and "empty store" in again.stderr
    assert result["benchmark"] == "statement" and result["store"] == backend
    assert result["period"] == ["2025-01-01", "2025-12-31"] and result["pay_days"] == 3
    assert result["lines"] == LINES and result["entries"] >= LINES and result["messages"] >= 3
    assert list(result["formats"]) == list(STATEMENT_FORMATS)
    for name, measured in result["formats"].items():
        assert measured["entries"] == result["entries"], name
        assert measured["bytes"] > 1000 and measured["peak_traced_mib"] > 0 and measured["rss_mib_after"] > 0
        # rounded to the millisecond: a fast machine may show 0.0 (no test relies on the machine's speed)
        assert 0 <= measured["query_s"] <= measured["seconds"] and 0 <= measured["render_s"] <= measured["seconds"]
    assert result["formats"]["pdf"]["pages"] >= 2 and result["formats"]["pdf"]["first_call_s"] >= 0
    assert result["meets_target"] is (result["formats"]["pdf"]["seconds"] < result["pdf_target_s"])


def test_pay_days_span_the_year_and_the_page_count_agrees_with_a_pdf_reader():
    days = pay_days(2025, 24)
    assert len(days) == 24 == len(set(days)) and days[0].date() == datetime.date(2025, 1, 1)
    assert days[-1].date() == datetime.date(2025, 12, 31)
    from adapters.statements.cjk_font import cjk_font_name
    from tests.unit.test_statement_pdf import AT, NOV, line

    for count in (1, 90):
        pdf = statement_pdf(build_statement("379000001A", NOV, [line(i) for i in range(count)], 0, AT),
                            cjk_font_name())
        assert pdf_pages(pdf) == len(PdfReader(io.BytesIO(pdf)).pages)
