"""GET /v1/statements over real mTLS: vouchers released through the four stages and paid out by the bank
exchange (one paid, one returned by the simulated bank), then the agency's statement downloaded as CSV and as
camt.053; another agency sees none of it, and bad queries are refused with problem documents."""

from __future__ import annotations

import csv
import datetime
import io
import json
import time

import pytest
from lxml import etree

from adapters.http.site import Answer
from adapters.storage.factory import open_store
from gateway.business_time import TAIPEI
from gateway.errors import Refusal
from gateway.statements.camt053 import NS, SCHEMA
from gateway.statements.csv_export import HEADER, TRAILER
from gateway.xmlsec.validation import schema_problems

from ..conftest import AGENCY_B
from .test_https_approvals import release, served, submitted  # noqa: F401
from .test_query_api import request
from .test_re_remittance import pay_out


@pytest.fixture(scope="module")
def paid(served, tmp_path_factory):  # noqa: F811
    """Two of agency A's vouchers: one paid, one returned by the bank."""
    from gateway.vouchers.bank_directory import BankDirectory
    from simulators.voucher_factory import VoucherFactory

    tmp_path = tmp_path_factory.mktemp("statements")
    factory = VoucherFactory(BankDirectory.shipped(), seed=41)
    store = open_store(served.store)
    try:
        good, good_file = submitted(served, factory, tmp_path)
        release(served, tmp_path, good, good_file)
        pay_out(store, served.pki_dir, return_rate=0.0)
        bad, bad_file = submitted(served, factory, tmp_path)
        release(served, tmp_path, bad, bad_file)
        pay_out(store, served.pki_dir, return_rate=1.0)
        rows = {row.end_to_end_id: row for v in (good, bad) for row in store.payments_of(v.voucher_id, v.revision)}
    finally:
        store.close()
    return good, bad, rows


def span() -> str:
    today = datetime.datetime.now(TAIPEI).date()
    return f"from={today - datetime.timedelta(days=2)}&to={today + datetime.timedelta(days=2)}"


def csv_rows(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def test_the_csv_statement_lists_the_agencys_paid_and_returned_lines_with_totals(served, paid):  # noqa: F811
    good, bad, rows = paid
    status, headers, body = request(served, "GET", f"/v1/statements?{span()}&format=csv&dates=roc")
    assert status == 200, body
    assert headers["content-type"] == "text/csv; charset=utf-8"
    assert headers["content-disposition"].startswith('attachment; filename="statement-379000001A-')
    table = csv_rows(body)
    assert table[0] == list(HEADER)
    blank = table.index([])
    entries = [dict(zip(HEADER, row)) for row in table[1:blank]]
    totals = dict(table[blank + 1:])
    assert list(totals) == list(TRAILER)
    by_id = {}
    for entry in entries:
        by_id.setdefault(entry["端對端識別碼 (end_to_end_id)"], []).append(entry)
    assert set(rows) <= set(by_id)
    payees = {(v.voucher_id, p.number): p for v in (good, bad) for p in v.lines}
    for e2e, row in rows.items():
        for entry in by_id[e2e]:
            payee = payees[(row.voucher_id, row.line_number)]
            assert entry["受款人 (payee_name)"] == payee.payee_name
            assert (entry["銀行代號 (bank_code)"], entry["分行代號 (branch_code)"], entry["帳號 (account_number)"]) == (
                payee.bank_code, payee.branch_code, payee.account_number)
            assert int(entry["金額 (amount)"]) == row.amount and entry["狀態 (state)"] == row.state.value
            assert "/" in entry["日期 (date)"] and not entry["日期 (date)"].startswith("20")  # 民國 dates
    assert {entry["狀態 (state)"] for e2e in rows for entry in by_id[e2e]} == {"paid", "returned"}
    assert all(entry["退匯原因代碼 (reason_code)"] for v in [bad] for e2e, row in rows.items()
               if row.voucher_id == v.voucher_id for entry in by_id[e2e])
    paid_sum = sum(int(e["金額 (amount)"]) for e in entries if e["類別 (entry)"] == "payment")
    returned_sum = sum(int(e["金額 (amount)"]) for e in entries if e["類別 (entry)"] == "return")
    opening, paid_total, returned_total, closing = (int(totals[label]) for label in TRAILER)
    assert (paid_total, returned_total) == (paid_sum, returned_sum)
    assert closing == opening + paid_sum - returned_sum and paid_sum >= good.total_amount


def test_the_camt053_statement_is_schema_valid_and_agrees_with_the_csv(served, paid):  # noqa: F811
    good, bad, rows = paid
    status, headers, body = request(served, "GET", f"/v1/statements?{span()}&format=camt053")
    assert status == 200, body
    assert headers["content-type"] == "application/xml" and headers["content-disposition"].endswith('.xml"')
    root = etree.fromstring(body)
    assert schema_problems(root, SCHEMA) == []
    ns = {"c": NS}
    entries = root.findall(".//c:Ntry", ns)
    ids = {n.findtext("c:NtryDtls/c:TxDtls/c:Refs/c:EndToEndId", namespaces=ns) for n in entries}
    assert set(rows) <= ids
    assert all(n.find("c:Amt", ns).get("Ccy") == "TWD" and n.findtext("c:Amt", namespaces=ns).isdigit()
               for n in entries)
    balances = {b.findtext("c:Tp/c:CdOrPrtry/c:Cd", namespaces=ns): int(b.findtext("c:Amt", namespaces=ns))
                for b in root.findall(".//c:Bal", ns)}
    table = csv_rows(request(served, "GET", f"/v1/statements?{span()}&format=csv")[2])
    totals = dict(table[table.index([]) + 1:])
    assert balances == {"OPBD": int(totals[TRAILER[0]]), "CLBD": int(totals[TRAILER[3]])}


def test_the_pdf_statement_prints_the_same_lines_and_totals_in_an_embedded_chinese_font(served, paid):  # noqa: F811
    from pypdf import PdfReader

    from adapters.statements.pdf import TITLE, amount_text

    good, bad, rows = paid
    status, headers, body = request(served, "GET", f"/v1/statements?{span()}&format=pdf")
    assert status == 200, body
    assert headers["content-type"] == "application/pdf"
    assert headers["content-disposition"].startswith('attachment; filename="statement-379000001A-')
    assert headers["content-disposition"].endswith('.pdf"') and body.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(body))
    text = "".join(page.extract_text() for page in reader.pages)
    flat = "".join(text.split())
    assert TITLE in text and "379000001A" in text
    for v in (good, bad):
        assert v.voucher_id in text
        for payee in v.lines:
            assert "".join(payee.payee_name.split()) in flat and amount_text(payee.amount) in text
    table = csv_rows(request(served, "GET", f"/v1/statements?{span()}&format=csv")[2])
    totals = dict(table[table.index([]) + 1:])
    assert all(amount_text(int(totals[label])) in text for label in TRAILER)
    assert "已付款" in text and "已退匯" in text
    fonts = [f.get_object() for page in reader.pages for f in page["/Resources"]["/Font"].values()]
    assert any("/FontFile2" in f["/FontDescriptor"].get_object() for f in fonts if "/FontDescriptor" in f)
    status, _, other = request(served, "GET", f"/v1/statements?{span()}&format=pdf", agency=AGENCY_B)
    assert status == 200 and not any(v.voucher_id in "".join(p.extract_text() for p in PdfReader(io.BytesIO(
        other)).pages) for v in (good, bad))


def test_another_agency_sees_none_of_the_lines(served, paid):  # noqa: F811
    _, _, rows = paid
    status, _, body = request(served, "GET", f"/v1/statements?{span()}&format=csv", agency=AGENCY_B)
    assert status == 200
    table = csv_rows(body)
    assert table[1] == [] and not set(rows) & {cell for row in table for cell in row}
    status, _, body = request(served, "GET", f"/v1/statements?{span()}&format=camt053", agency=AGENCY_B)
    assert status == 200 and not set(rows) & {n.text for n in etree.fromstring(body).iter("{%s}EndToEndId" % NS)}


@pytest.mark.parametrize("query", [
    "from=2026-11-01&to=2026-11-30",                       # no format
    "from=2026-11-01&to=2026-11-30&format=xlsx",
    "from=2026-02-30&to=2026-03-01&format=csv",            # no such day
    "from=2026-11-30&to=2026-11-01&format=csv",            # backwards
    "from=2025-01-01&to=2026-11-30&format=csv",            # over 400 days
    "from=2026-11-01T00:00:00Z&to=2026-11-30&format=csv",
    "from=2026-11-01&to=2026-11-30&format=camt053&dates=roc",
    "from=2026-11-01&to=2026-11-30&format=csv&agency=379000002A",
])
def test_bad_statement_queries_are_refused_with_a_problem_document(served, query):  # noqa: F811
    status, headers, body = request(served, "GET", f"/v1/statements?{query}")
    assert status == 400 and headers["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == "query-invalid"


def test_a_pdf_waits_its_turn_in_the_process_and_one_too_long_is_refused_for_csv(served, paid):  # noqa: F811
    import threading
    from urllib.parse import parse_qs

    from adapters.http.query_params import parse_statement_query
    from adapters.statements.service import PDF_WAIT, StatementService

    def query(fmt: str):
        args = {k.encode(): [v[0].encode()] for k, v in parse_qs(f"{span()}&format={fmt}").items()}
        return parse_statement_query(args)

    good, bad, rows = paid
    store = open_store(served.store)
    try:
        now = datetime.datetime.now(datetime.timezone.utc)
        slots = threading.BoundedSemaphore(1)
        service = StatementService(intake=None, store=store, pdf_slots=slots)
        assert service.answer(good.agency_code, query("pdf"), now).status == 200
        slots.acquire()  # another PDF is rendering
        started = time.monotonic()
        busy = service.answer(good.agency_code, query("pdf"), now)
        waited = time.monotonic() - started
        assert busy.status == 503 and json.loads(busy.body)["code"] == "statement-busy"
        # waited for its turn (the lower bound is the point); the upper one only catches "waits for ever"
        assert int(busy.headers["Retry-After"]) > 0 and PDF_WAIT - 0.1 <= waited < PDF_WAIT + 30
        assert service.answer(good.agency_code, query("csv"), now).status == 200  # CSV needs no turn
        slots.release()
        short = StatementService(intake=None, store=store, pdf_slots=slots, pdf_max_entries=len(rows) - 1)
        with pytest.raises(Refusal) as refused:
            short.answer(good.agency_code, query("pdf"), now)
        assert refused.value.code == "statement-too-large" and "CSV" in refused.value.problems[0].message
        assert Answer.problem(refused.value).status == 413
        assert short.answer(good.agency_code, query("csv"), now).status == 200
        assert slots.acquire(blocking=False)  # every turn taken was given back
    finally:
        store.close()
