"""The statement query of the SQL stores (adapters/storage/bank.py ``statement_lines``, ``paid_before``) and
migration v0008's backfill, on SQLite and PostgreSQL, over a day of payments the simulated bank answered."""

from __future__ import annotations

import datetime
from pathlib import Path

from adapters.bank.exchange import BankBatcher, ReportIntake
from adapters.storage.migrations import v0008_statements
from gateway.bank.pain001 import TAIPEI_TREASURY
from gateway.bank.payments import LineState
from gateway.bank.settlement import SigningIdentity
from gateway.business_time import TAIPEI
from gateway.statements.lines import Period, build_statement, opening_total
from simulators.bank import SimulatedBank
from simulators.bank_day import day_of_vouchers, place_accepted
from simulators.pki.layout import load_cert, load_key

from .test_store_contract import backend, pg_database, store  # noqa: F401

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
A, B = "379000001A", "379000002A"


def clock():
    return NOW


def paid_out(store, pki, *, payments: int = 40, return_rate: float = 0.3) -> list:
    """A day of vouchers of agencies A and B batched, sent and answered by the simulated bank."""
    manifest = pki.manifest
    gateway_cert, bank_cert = load_cert(Path(manifest["gateway"]["cert"])), load_cert(Path(manifest["bank"]["cert"]))
    vouchers = day_of_vouchers(payments, agencies=[A, B], today=NOW.date(), seed=11)
    place_accepted(store, vouchers, at=NOW)
    signer = SigningIdentity(load_key(Path(manifest["gateway"]["key"])), gateway_cert, TAIPEI_TREASURY)
    BankBatcher(store, signer, clock=clock).batch_all()
    bank = SimulatedBank(gateway_cert, load_key(Path(manifest["bank"]["key"])), bank_cert, clock, seed=5,
                         return_rate=return_rate)
    intake = ReportIntake(store, bank_cert, treasury_account=TAIPEI_TREASURY.account_number, clock=clock)
    for message in store.unsent_messages():
        for _, report in bank.receive(message.body):
            assert intake.handle(report) == "ack"
        store.mark_sent(message.message_id, NOW)
    return vouchers


def test_the_statement_holds_the_agencys_lines_with_their_payees_and_dates(store, pki):
    vouchers = paid_out(store, pki)
    today = NOW.astimezone(TAIPEI).date()
    period = Period(today - datetime.timedelta(days=3), today + datetime.timedelta(days=3))
    lines = store.statement_lines(A, period.start, period.end)
    mine = {row.end_to_end_id: row for v in vouchers if v.agency_code == A
            for row in store.payments_of(v.voucher_id, v.revision)}
    assert lines and {line.end_to_end_id for line in lines} == set(mine)
    payees = {(v.voucher_id, p.number): p for v in vouchers for p in v.lines}
    for line in lines:
        payee = payees[(line.voucher_id, line.line_number)]
        row = mine[line.end_to_end_id]
        assert (line.payee_name, line.payee_bank_code, line.payee_branch_code, line.payee_account) == (
            payee.payee_name, payee.bank_code, payee.branch_code, payee.account_number)
        assert (line.amount, line.state, line.reason_code, line.bank_reference) == (
            row.amount, row.state, row.reason_code, row.bank_reference)
        assert line.statement_on == (row.booked_on or row.changed_at.astimezone(TAIPEI).date())
        assert (line.paid_on is not None) == (row.state is LineState.PAID) or row.state is LineState.RETURNED
    assert {line.state for line in lines} >= {LineState.PAID, LineState.RETURNED}
    statement = build_statement(A, period, lines, store.paid_before(A, period.start), NOW)
    paid = sum(line.amount for line in lines if line.state is LineState.PAID)
    assert statement.opening == 0 and statement.closing == paid
    # nothing of the period's agency-B lines, nothing before the period, all of it after
    assert store.statement_lines(A, period.start - datetime.timedelta(days=30), period.start - datetime.timedelta(days=1)) == []
    assert store.paid_before(A, period.end + datetime.timedelta(days=1)) == paid
    assert store.paid_before(A, period.end + datetime.timedelta(days=1)) == opening_total(
        lines, period.end + datetime.timedelta(days=1))
    assert not {line.voucher_id for line in lines} & {v.voucher_id for v in vouchers if v.agency_code == B}


def test_migration_v0008_backfills_payees_from_the_stored_vouchers(store, pki):
    paid_out(store, pki, payments=12, return_rate=0.0)
    today = NOW.astimezone(TAIPEI).date()
    before = store.statement_lines(A, today, today) + store.statement_lines(B, today, today)
    with store._migration_tx() as conn:
        conn.execute("UPDATE payments SET payee_name = NULL, payee_bank_code = NULL, payee_branch_code = NULL, "
                     "payee_account = NULL")
    assert {line.payee_name for line in store.statement_lines(A, today, today)} == {None}
    with store._migration_tx() as conn:
        v0008_statements.backfill(conn, store._sql)
    after = store.statement_lines(A, today, today) + store.statement_lines(B, today, today)
    key = lambda line: line.end_to_end_id  # noqa: E731
    assert sorted(after, key=key) == sorted(before, key=key) and all(line.payee_name for line in after)
