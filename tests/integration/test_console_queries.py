"""The console's reads (adapters/console/reads.py) on both stores: every list pages correctly with its keyset
cursor, and on SQLite none of them scans a table or sorts in a temporary B-tree (EXPLAIN QUERY PLAN), so a
page costs the same at a million vouchers as at ten. On PostgreSQL the same queries run with the same
answers (its planner's choice depends on statistics a tiny table does not have)."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest

from adapters.bank.exchange import BankBatcher
from adapters.console.reads import ConsoleReads
from gateway.bank.pain001 import TAIPEI_TREASURY
from gateway.bank.settlement import SigningIdentity
from gateway.errors import Refusal
from simulators.bank_day import day_of_vouchers, place_accepted
from simulators.pki.layout import load_cert, load_key

from .test_store_contract import backend, pg_database, store  # noqa: F401

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
AGENCIES = ["379000001A", "379000002A"]


@pytest.fixture
def filled(store, pki):  # noqa: F811
    vouchers = day_of_vouchers(24, agencies=AGENCIES, today=NOW.date(), seed=5)
    place_accepted(store, vouchers, at=NOW)
    manifest = pki.manifest
    signer = SigningIdentity(load_key(Path(manifest["gateway"]["key"])), load_cert(Path(manifest["gateway"]["cert"])),
                             TAIPEI_TREASURY)
    BankBatcher(store, signer, clock=lambda: NOW, max_per_message=10).batch_all()
    return store, vouchers


def every_page(read, **kw):
    """All items of a paged read, two at a time, following its cursors."""
    items, cursor = [], None
    for _ in range(1000):
        page, cursor = read(after=cursor, limit=2, **kw)
        assert len(page) <= 2
        items += page
        if cursor is None:
            return items
    raise AssertionError("the cursor never ended")


def test_every_console_list_pages_through_all_its_rows_once(filled):
    db, vouchers = filled
    reads = ConsoleReads(db)
    everyone = every_page(reads.vouchers, agency=None, status=None, received_from=None, received_to=None)
    assert sorted(r.voucher_id for r in everyone) == sorted(v.voucher_id for v in vouchers)
    mine = every_page(reads.vouchers, agency=AGENCIES[0], status="batched", received_from=NOW - datetime.timedelta(1),
                      received_to=NOW + datetime.timedelta(1))
    assert sorted(r.voucher_id for r in mine) == sorted(v.voucher_id for v in vouchers if v.agency_code == AGENCIES[0])
    assert reads.vouchers(agency=None, status="paid", received_from=None, received_to=None, after=None,
                          limit=5) == ([], None)
    payee = vouchers[0].lines[0].payee_name
    lines = every_page(reads.payee_lines, agency=None, prefix=payee[:1])
    assert lines and all(name.startswith(payee[:1]) for _, name in lines)
    assert (vouchers[0].voucher_id, 1) in {(row.voucher_id, row.line_number) for row, _ in lines}
    assert len({row.end_to_end_id for row, _ in lines}) == len(lines)
    own = every_page(reads.payee_lines, agency=AGENCIES[1], prefix=payee[:1])
    assert all(row.agency == AGENCIES[1] for row, _ in own)
    sent = every_page(reads.bank_messages, direction="out", start=NOW - datetime.timedelta(hours=1),
                      end=NOW + datetime.timedelta(hours=1))
    assert sum(m.payment_count for m in sent) == sum(len(v.lines) for v in vouchers)
    assert every_page(reads.returned_lines) == [] and every_page(reads.unconfirmed_lines) == []
    with pytest.raises(Refusal) as refused:
        reads.vouchers(agency=None, status=None, received_from=None, received_to=None, after="bm90LWEtY3Vyc29y",
                       limit=5)
    assert refused.value.code == "cursor-invalid"


def test_no_console_query_scans_a_table_or_sorts_on_sqlite(filled, backend):  # noqa: F811
    db, vouchers = filled
    if backend.name != "sqlite":
        return  # the PostgreSQL half of this module is the test above
    issued: list[tuple[str, tuple]] = []
    real_read = db._read

    def recording(sql, params=()):
        issued.append((sql, params))
        return real_read(sql, params)

    db._read = recording
    reads = ConsoleReads(db)
    cursor_of = {}
    for agency in (None, AGENCIES[0]):
        for status in (None, "batched"):
            for span in ((None, None), (NOW - datetime.timedelta(1), NOW + datetime.timedelta(1))):
                _, cursor_of["v"] = reads.vouchers(agency=agency, status=status, received_from=span[0],
                                                   received_to=span[1], after=None, limit=1)
                reads.vouchers(agency=agency, status=status, received_from=span[0], received_to=span[1],
                               after=cursor_of["v"], limit=1)
        _, cursor = reads.payee_lines(agency=agency, prefix=vouchers[0].lines[0].payee_name[:1], after=None, limit=1)
        reads.payee_lines(agency=agency, prefix="王", after=cursor, limit=1)
    _, cursor = reads.bank_messages("out", NOW - datetime.timedelta(1), NOW + datetime.timedelta(1), after=None,
                                    limit=1)
    reads.bank_messages("in", NOW - datetime.timedelta(1), NOW + datetime.timedelta(1), after=cursor, limit=1)
    reads.returned_lines(after=None, limit=5)
    reads.unconfirmed_lines(after=None, limit=5)
    db._read = real_read
    assert len(issued) >= 20
    conn = db._conn()
    for sql, params in issued:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
        for step in plan:
            assert not re.match(r"SCAN (intake|payments|bank_messages)\b(?! USING (COVERING )?INDEX)", step), (sql, plan)
            assert "TEMP B-TREE" not in step, (sql, plan)


def test_the_voucher_page_shows_each_lines_bank_state_and_deposit_notice_from_the_store(filled):
    from adapters.console.identity import CsrfTokens, Viewer
    from adapters.console.messages import labels
    from adapters.console.routes import Console
    from adapters.console.view import View

    db, vouchers = filled
    voucher = next(v for v in vouchers if any(line.notice for line in v.lines))
    console = Console(intake=None, store=db, csrf=CsrfTokens(b"k" * 32))
    viewer = Viewer(voucher.agency_code, "CN=test", "ab" * 32)
    page = console.detail_page(View(viewer, "en", labels("en"), {}, "/console/vouchers/x"), voucher.voucher_id)
    text = page.body.decode()
    acks = text.split('id="bank-acks"', 1)[1].split("</table>", 1)[0]
    for row in db.payments_of(voucher.voucher_id, voucher.revision):
        assert row.end_to_end_id in acks
    assert acks.count("<tr>") == len(voucher.lines) + 1 and "pending" in acks
    notices = text.split('id="notices"', 1)[1].split("</table>", 1)[0]
    assert notices.count("<tr>") == 1 + sum(1 for line in voucher.lines if line.notice)
    other = Viewer("379000009A", "CN=other", "cd" * 32)
    with pytest.raises(Refusal) as refused:
        console.detail_page(View(other, "en", labels("en"), {}, "/console/vouchers/x"), voucher.voucher_id)
    assert refused.value.code == "not-found"


def test_a_store_that_fails_a_read_is_answered_503_store_unavailable_not_500(backend, store):  # noqa: F811
    from adapters.console.identity import CsrfTokens, Viewer
    from adapters.console.messages import labels
    from adapters.console.routes import Console
    from adapters.console.view import View

    console = Console(intake=None, store=store, csrf=CsrfTokens(b"k" * 32))
    view = View(Viewer(AGENCIES[0], "CN=a", "aa" * 32), "en", labels("en"), {}, "/console/vouchers")
    assert console.answer(view, console.search_page).status == 200
    backend.execute("ALTER TABLE intake RENAME TO intake_gone")  # the store now fails the page's read
    reply = console.answer(view, console.search_page)
    assert reply.status == 503 and b"store-unavailable" in reply.body and b"Traceback" not in reply.body
