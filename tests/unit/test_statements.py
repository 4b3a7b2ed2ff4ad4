"""Statements (gateway/statements/lines.py, statement_csv.py, camt053.py) and the statement query string."""

from __future__ import annotations

import csv
import datetime
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.http.query_params import parse_statement_query
from gateway.bank.payments import LineState
from gateway.errors import Refusal
from gateway.statements.camt053 import NS, camt053_bytes
from gateway.statements.csv_export import BOM, HEADER, TRAILER, statement_csv
from gateway.statements.lines import EntryKind, Period, StatementLine, build_statement, opening_total, roc_date

D = datetime.date
AT = datetime.datetime(2026, 11, 27, 3, 0, tzinfo=datetime.timezone.utc)
NOV = Period(D(2026, 11, 1), D(2026, 11, 30))


def line(n: int, state: LineState, *, amount: int = 1000, paid_on=None, statement_on=datetime.date(2026, 11, 10),
         name: str = "王小明", reason: str | None = None) -> StatementLine:
    return StatementLine(f"379000001A-115-{n:010d}", 1, 1, f"379000001A115{n:010d}R001L0001", name, "012", "2102",
                         "0123456789", amount, state, reason, "account closed" if reason else None,
                         f"BR{n}", "MSG-1", statement_on if state in (LineState.PAID, LineState.RETURNED) else None,
                         paid_on, statement_on)


def test_totals_count_payments_and_returns_after_payment_but_not_refusals_or_open_lines():
    lines = [
        line(1, LineState.PAID, amount=100, paid_on=D(2026, 11, 2), statement_on=D(2026, 11, 2)),
        line(2, LineState.RETURNED, amount=30, paid_on=D(2026, 11, 3), statement_on=D(2026, 11, 9), reason="AC04"),
        line(3, LineState.RETURNED, amount=7, paid_on=D(2026, 10, 20), statement_on=D(2026, 11, 5), reason="AC04"),
        line(4, LineState.RETURNED, amount=5000, statement_on=D(2026, 11, 6), reason="AC01"),   # never paid
        line(5, LineState.PENDING, amount=9000, statement_on=D(2026, 11, 7)),
        line(6, LineState.PAID, amount=1, paid_on=D(2026, 12, 1), statement_on=D(2026, 12, 1)),  # after the period
    ]
    statement = build_statement("379000001A", NOV, lines, 50, AT)
    assert [(e.kind, e.line.amount, e.on) for e in statement.entries] == [
        (EntryKind.PAYMENT, 100, D(2026, 11, 2)), (EntryKind.PAYMENT, 30, D(2026, 11, 3)),
        (EntryKind.RETURN, 7, D(2026, 11, 5)), (EntryKind.REFUSED, 5000, D(2026, 11, 6)),
        (EntryKind.OPEN, 9000, D(2026, 11, 7)), (EntryKind.RETURN, 30, D(2026, 11, 9))]
    assert (statement.opening, statement.paid, statement.returned, statement.closing) == (50, 130, 37, 143)
    # the closing of November is the opening of December, by the same definition
    assert opening_total(lines, D(2026, 11, 1)) == 7
    assert opening_total(lines, D(2026, 12, 1)) == 7 + 130 - 37


def test_a_period_is_inclusive_at_most_400_days_and_after_1911():
    assert Period(D(2026, 1, 1), D(2026, 1, 1)).days == 1
    assert Period(D(2026, 1, 1), D(2027, 2, 4)).days == 400
    for start, end in [(D(2026, 1, 2), D(2026, 1, 1)), (D(2026, 1, 1), D(2027, 2, 5)), (D(1911, 12, 1), D(1912, 1, 1))]:
        with pytest.raises(ValueError):
            Period(start, end)


def test_roc_dates():
    assert roc_date(D(2026, 11, 27)) == "115/11/27"
    assert roc_date(D(1912, 1, 1)) == "001/01/01"


def _rows(data: bytes) -> list[list[str]]:
    assert data.startswith(BOM.encode("utf-8"))
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_csv_has_a_bom_a_bilingual_header_roc_dates_and_totals_and_names_round_trip():
    tricky = '臺北"好"公司, 股份有限公司'
    lines = [line(1, LineState.PAID, amount=1234, paid_on=D(2026, 11, 27), statement_on=D(2026, 11, 27), name=tricky),
             line(2, LineState.RETURNED, amount=10, statement_on=D(2026, 11, 28), name="=HYPERLINK(1)", reason="AC01")]
    data = statement_csv(build_statement("379000001A", NOV, lines, 0, AT), roc=True)
    rows = _rows(data)
    assert rows[0] == list(HEADER) and "受款人 (payee_name)" in rows[0]
    first = dict(zip(HEADER, rows[1]))
    assert first["日期 (date)"] == "115/11/27" and first["受款人 (payee_name)"] == tricky
    assert first["金額 (amount)"] == "1234" and first["帳號 (account_number)"] == "0123456789"
    second = dict(zip(HEADER, rows[2]))
    assert second["類別 (entry)"] == "refused" and second["受款人 (payee_name)"] == "'=HYPERLINK(1)"
    assert second["退匯原因代碼 (reason_code)"] == "AC01" and second["退匯原因 (reason)"].startswith("AC01 ")
    assert rows[3] == []
    assert rows[4:] == [[TRAILER[0], "0"], [TRAILER[1], "1234"], [TRAILER[2], "0"], [TRAILER[3], "1234"]]
    iso = _rows(statement_csv(build_statement("379000001A", NOV, lines, 0, AT)))
    assert iso[1][0] == "2026-11-27"


def test_camt053_is_schema_valid_with_balances_and_one_entry_per_line():
    lines = [line(1, LineState.PAID, amount=1234, paid_on=D(2026, 11, 27), statement_on=D(2026, 11, 27)),
             line(2, LineState.RETURNED, amount=10, paid_on=D(2026, 11, 2), statement_on=D(2026, 11, 3),
                  reason="AC04")]
    root = etree.fromstring(camt053_bytes(build_statement("379000001A", NOV, lines, 5, AT)))
    ns = {"c": NS}
    stmt = root.find("c:BkToCstmrStmt/c:Stmt", ns)
    balances = [(b.findtext("c:Tp/c:CdOrPrtry/c:Cd", namespaces=ns), b.findtext("c:Amt", namespaces=ns),
                 b.findtext("c:CdtDbtInd", namespaces=ns)) for b in stmt.findall("c:Bal", ns)]
    assert balances == [("OPBD", "5", "DBIT"), ("CLBD", str(5 + 1234 + 10 - 10), "DBIT")]
    entries = [(n.findtext("c:CdtDbtInd", namespaces=ns), n.findtext("c:Amt", namespaces=ns),
                n.find("c:Amt", ns).get("Ccy"), n.findtext("c:NtryDtls/c:TxDtls/c:Refs/c:EndToEndId", namespaces=ns),
                n.findtext("c:NtryDtls/c:TxDtls/c:RtrInf/c:Rsn/c:Cd", namespaces=ns)) for n in stmt.findall("c:Ntry", ns)]
    assert entries == [("DBIT", "10", "TWD", lines[1].end_to_end_id, None),
                       ("CRDT", "10", "TWD", lines[1].end_to_end_id, "AC04"),
                       ("DBIT", "1234", "TWD", lines[0].end_to_end_id, None)]


_names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=200)


@st.composite
def _lines(draw):
    n = draw(st.integers(1, 10**9))
    state = draw(st.sampled_from(list(LineState)))
    on = draw(st.dates(D(2026, 10, 1), D(2026, 12, 31)))
    paid = draw(st.one_of(st.none(), st.dates(D(2026, 10, 1), on))) if state is LineState.RETURNED else (
        on if state is LineState.PAID else None)
    return StatementLine(f"379000001A-115-{n:010d}", draw(st.integers(1, 999)), draw(st.integers(1, 9999)),
                         f"379000001A115{n:010d}R001L0001", draw(st.one_of(st.none(), _names)),
                         draw(st.from_regex(r"[0-9]{3}", fullmatch=True)), draw(st.from_regex(r"[0-9]{4}", fullmatch=True)),
                         draw(st.from_regex(r"[0-9]{6,16}", fullmatch=True)), draw(st.integers(1, 10**12)), state,
                         draw(st.one_of(st.none(), st.sampled_from(["AC01", "AC04", "AM05", "MS03"]))),
                         draw(st.one_of(st.none(), _names)), draw(st.one_of(st.none(), st.text("AB0123456789", min_size=1,
                                                                                               max_size=40))),
                         "MSG-1", on if state in (LineState.PAID, LineState.RETURNED) else None, paid, on)


@settings(max_examples=60, deadline=None)
@given(st.lists(_lines(), max_size=12), st.integers(-10**6, 10**12))
def test_any_statement_renders_as_valid_camt053_and_csv_that_reads_back(lines, opening):
    statement = build_statement("379000001A", NOV, lines, opening, AT)
    root = etree.fromstring(camt053_bytes(statement))  # raises if not schema-valid
    assert len(root.findall(".//{%s}Ntry" % NS)) == len(statement.entries)
    rows = _rows(statement_csv(statement, roc=True))
    assert len(rows) == 1 + len(statement.entries) + 1 + 4
    assert rows[-1] == [TRAILER[3], str(statement.closing)]


def _args(query: str) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for part in query.split("&"):
        name, _, value = part.partition("=")
        out.setdefault(name.encode(), []).append(value.encode())
    return out


def test_the_statement_query_is_read_strictly():
    query = parse_statement_query(_args("from=2026-11-01&to=2026-11-30&format=csv&dates=roc"))
    assert (query.period, query.format, query.roc_dates) == (NOV, "csv", True)
    query = parse_statement_query(_args("from=2026-11-01&to=2026-11-30&format=pdf&dates=roc"))
    assert (query.period, query.format, query.roc_dates) == (NOV, "pdf", True)
    for bad in ["from=2026-11-01&to=2026-11-30", "from=2026-11-01&to=2026-11-30&format=xlsx",
                "from=2026-11-31&to=2026-12-01&format=csv", "from=20261101&to=2026-11-30&format=csv",
                "from=2026-12-01&to=2026-11-30&format=csv", "from=2025-01-01&to=2026-11-30&format=csv",
                "from=2026-11-01&to=2026-11-30&format=camt053&dates=roc", "from=2026-11-01&to=2026-11-30&format=csv&x=1",
                "from=2026-11-01&from=2026-11-02&to=2026-11-30&format=csv"]:
        with pytest.raises(Refusal) as caught:
            parse_statement_query(_args(bad))
        assert caught.value.code == "query-invalid" and caught.value.http_status == 400, bad
