"""The bank exchange end to end, on SQLite and a real PostgreSQL, over the in-process transport and a real
RabbitMQ: treasury-accepted vouchers are batched into signed pain.001 messages (one transaction with the
outbox), relayed with confirms, booked by the simulated bank, and its signed pain.002 / camt.054 reports
applied back to every line, voucher and allotment — then ``vgw audit reconcile`` proves the sums.

Also what a hostile or confused bank can do: repeat a report, send the notification before the status
report, name a payment never sent, tamper with a signed report, re-use a report id with other content.
Each changes nothing it should not, and the bad ones are dead-lettered.
"""

from __future__ import annotations

import datetime
import os
import time
import uuid
from pathlib import Path

import pika
import pytest

from adapters.bank.amqp_transport import AmqpBankTransport
from adapters.bank.exchange import BankBatcher, OutboxRelay, ReportIntake
from adapters.bank.transport import BankTopology, InProcessBankTransport
from adapters.cli.main import main as vgw
from gateway.bank.pain001 import TAIPEI_TREASURY
from gateway.bank.payments import LineState
from gateway.bank.settlement import SigningIdentity
from gateway.reconciliation import reconcile
from gateway.store import StoreError
from simulators.bank import SimulatedBank
from simulators.bank_day import day_of_vouchers, place_accepted
from simulators.bench.transport import delete_topology
from simulators.pki.layout import load_cert, load_key

from .test_store_contract import backend, pg_database, store  # noqa: F401
from .twisted_reactor import call, eventually, reactor_thread  # noqa: F401

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
AGENCIES = ["379000001A", "379000002A"]


def clock():
    return NOW


def quiet(reactor, rounds: int = 5) -> None:
    """Wait until no report is being handled in the reactor's thread pool for ``rounds`` checks in a row:
    closing a SQLite store under a handler still writing through its connection crashes the interpreter."""
    idle = 0
    deadline = time.monotonic() + 20
    while idle < rounds:
        assert time.monotonic() < deadline, "report handlers still running after 20 s"
        idle = idle + 1 if not call(reactor, lambda: reactor.getThreadPool().working) else 0
        time.sleep(0.02)  # polling the thread pool, with a deadline


class World:
    """A store with a day of treasury-accepted vouchers, the gateway's parts and a simulated bank."""

    def __init__(self, store, pki, transport, *, return_rate: float = 0.2, payments: int = 60) -> None:
        manifest = pki.manifest
        self.store = store
        self.gateway_cert = load_cert(Path(manifest["gateway"]["cert"]))
        self.bank_cert = load_cert(Path(manifest["bank"]["cert"]))
        signer = SigningIdentity(load_key(Path(manifest["gateway"]["key"])), self.gateway_cert, TAIPEI_TREASURY)
        self.vouchers = day_of_vouchers(payments, agencies=AGENCIES, today=NOW.date(), seed=7)
        place_accepted(store, self.vouchers, at=NOW)
        self.batcher = BankBatcher(store, signer, clock=clock, max_per_message=25)
        self.transport = transport
        self.relay = OutboxRelay(store, transport, clock=clock)
        self.dead: list[str] = []
        self.intake = ReportIntake(store, self.bank_cert, treasury_account=TAIPEI_TREASURY.account_number,
                                   clock=clock, on_dead=self.dead.append)
        self.bank = SimulatedBank(self.gateway_cert, load_key(Path(manifest["bank"]["key"])), self.bank_cert, clock,
                                  seed=3, return_rate=return_rate)

    def connect(self) -> None:
        self.transport.consume(self.transport.topology.reports_queue, self.intake.handler)
        self.bank.attach(self.transport, self.transport.topology.transfers_queue)

    def lines(self) -> list:
        return [row for v in self.vouchers for row in self.store.payments_of(v.voucher_id, v.revision)]

    def settled(self) -> bool:
        lines = self.lines()
        return (bool(lines) and all(row.state in (LineState.PAID, LineState.RETURNED) for row in lines)
                and all(self.store.get(v.voucher_id, v.revision).status in ("paid", "returned") for v in self.vouchers))


@pytest.fixture
def in_process(reactor_thread):
    transport = InProcessBankTransport(reactor=reactor_thread)
    call(reactor_thread, transport.start)
    yield transport
    call(reactor_thread, transport.stop)


@pytest.fixture
def amqp(reactor_thread):
    url = os.environ.get("VGW_TEST_AMQP_URL")
    if not url:
        pytest.fail("VGW_TEST_AMQP_URL is not set: run under scripts/with-test-services (make test)", pytrace=False)
    parameters = pika.URLParameters(url)
    topology = BankTopology().prefixed(f"t{uuid.uuid4().hex[:8]}.")
    transport = AmqpBankTransport(parameters, topology, reactor=reactor_thread)
    call(reactor_thread, transport.start)
    yield transport
    call(reactor_thread, transport.stop)
    delete_topology(parameters, topology)


def run_day(world: World, reactor) -> None:
    call(reactor, world.connect)
    batched = world.batcher.batch_all()
    assert batched == sum(len(v.lines) for v in world.vouchers)
    assert call(reactor, world.relay.pump) == len(world.store.bank_messages("out", limit=1000))
    eventually(reactor, lambda: world.settled(), "every payment line and voucher paid or returned", timeout=60)
    # and quiet: every report the bank sent handled, so nothing still writes when the test's store closes
    handled = world.intake.counts
    eventually(reactor, lambda: handled.reports + handled.repeats + handled.dead == world.bank.counts.reports,
               "every report handled", timeout=60)


def assert_reconciled(world: World) -> dict:
    result = reconcile(world.store.reconciliation_facts())
    assert result.ok, result.discrepancy
    return result.checked


@pytest.mark.parametrize("transport_name", ["in_process", "amqp"])
def test_a_day_of_payments_reaches_the_bank_once_and_every_line_comes_back_settled(request, store, pki,
                                                                                 reactor_thread, transport_name):
    world = World(store, pki, request.getfixturevalue(transport_name))
    run_day(world, reactor_thread)
    lines = world.lines()
    assert max(world.bank.booked.values()) == 1 and world.bank.counts.duplicate_payments == 0
    paid = [row for row in lines if row.state is LineState.PAID]
    returned = [row for row in lines if row.state is LineState.RETURNED]
    assert paid and returned, "a 20% return rate over 60 lines gives both outcomes"
    assert {row.end_to_end_id for row in paid} == set(world.bank.booked)
    assert all(row.reason_code in ("AC01", "AC04", "BE01") and row.bank_reference for row in returned)
    for voucher in world.vouchers:
        states = {row.state for row in store.payments_of(voucher.voucher_id, voucher.revision)}
        expected = "returned" if LineState.RETURNED in states else "paid"
        assert store.get(voucher.voucher_id, voucher.revision).status == expected
    # money: every allotment's consumed is exactly the paid lines, nothing stays reserved
    balances = dict(store.budget_balances())
    assert sum(b.consumed for b in balances.values()) == sum(row.amount for row in paid)
    assert sum(b.reserved for b in balances.values()) == 0
    checked = assert_reconciled(world)
    assert checked["by_state"]["paid"]["count"] == len(paid) and world.dead == []
    assert store.unsent_messages() == []


def test_a_repeated_report_changes_nothing_and_one_reusing_an_id_is_dead_lettered(store, pki, reactor_thread,
                                                                               in_process):
    world = World(store, pki, in_process)
    world.batcher.batch_all()
    message = store.bank_messages("out")[0]
    answers = world.bank.receive(message.body)
    assert [world.intake.handle(body) for _, body in answers] == ["ack"] * len(answers)
    audit = len(store.audit_entries(limit=1000))
    states = {row.end_to_end_id: row.state for row in world.lines()}
    assert [world.intake.handle(body) for _, body in answers] == ["ack"] * len(answers)
    assert world.intake.counts.repeats == len(answers)
    assert len(store.audit_entries(limit=1000)) == audit and {r.end_to_end_id: r.state for r in world.lines()} == states
    # the bank re-answers a transfer message it has seen with the same reports, and books nothing again
    assert world.bank.receive(message.body) == answers and max(world.bank.booked.values()) == 1
    # a different report under an id already used
    reused = answers[0][0]
    other = world.bank._sealed("pain.002.001.10", _pain002_for(world, message, "ACSC", reused), reused, NOW)[1]
    assert world.intake.handle(other) == "dead" and world.dead == ["bank-report-conflict"]


def _pain002_for(world: World, message, status: str, report_id: str = "X"):
    from gateway.bank.report_writing import build_pain002

    rows = store_rows = world.store.payments_of_message(message.message_id)
    assert store_rows
    return build_pain002(message_id=report_id, created_at=NOW, original_message_id=message.message_id,
                         group_status=status, tx_statuses=[(r.end_to_end_id, status, None, None, r.amount, None,
                                                            r.payment_info_id) for r in rows])


def test_a_notification_before_its_status_report_settles_the_same_way(store, pki, reactor_thread, in_process):
    world = World(store, pki, in_process, return_rate=0.0)
    world.batcher.batch_all()
    message = store.bank_messages("out")[0]
    status_report, notification = world.bank.receive(message.body)
    assert world.intake.handle(notification[1]) == "ack"  # camt.054 first: booked means paid
    rows = store.payments_of_message(message.message_id)
    assert {row.state for row in rows} == {LineState.PAID}
    assert world.intake.handle(status_report[1]) == "ack"  # the late pain.002 changes nothing
    assert {row.state for row in store.payments_of_message(message.message_id)} == {LineState.PAID}
    assert world.intake.counts.lines == len(rows)


def test_reports_naming_unknown_payments_or_tampered_are_dead_lettered_and_change_nothing(store, pki,
                                                                                        reactor_thread, in_process):
    world = World(store, pki, in_process)
    world.batcher.batch_all()
    message = store.bank_messages("out")[0]
    audit = len(store.audit_entries(limit=1000))
    unknown = world.bank._sealed("pain.002.001.10", _pain002_unknown(message.message_id), "UNKNOWN1", NOW)[1]
    assert world.intake.handle(unknown) == "dead"
    status_report = world.bank.receive(message.body)[0][1]
    tampered = status_report.replace(b"ACSC", b"RJCT", 1) if b"ACSC" in status_report else status_report + b" "
    assert world.intake.handle(tampered) == "dead"
    assert world.intake.handle(b"<not xml") == "dead"
    assert world.dead[0] == "bank-reference-unknown" and len(world.dead) == 3
    assert len(store.audit_entries(limit=1000)) == audit
    assert {row.state for row in store.payments_of_message(message.message_id)} == {LineState.PENDING}


def _pain002_unknown(original: str):
    from gateway.bank.report_writing import build_pain002

    return build_pain002(message_id="UNKNOWN1", created_at=NOW, original_message_id=original, group_status="PART",
                         tx_statuses=[("379000009A115NOPE000001R001L0001", "ACSC", None, None, 100, None,
                                       original + "-01")])


def test_a_message_sent_again_after_a_lost_mark_is_booked_once(store, pki, reactor_thread, in_process):
    """The relay crashed after the broker's confirm and before marking the message sent: it sends it again."""
    world = World(store, pki, in_process, return_rate=0.0)
    run_day(world, reactor_thread)
    first = store.bank_messages("out")[0]
    world.bank.receive(first.body)  # the re-sent copy arrives at the bank
    assert world.bank.counts.repeated_messages == 1 and max(world.bank.booked.values()) == 1
    assert_reconciled(world)


def test_vgw_audit_reconcile_proves_a_settled_store_and_names_the_first_discrepancy(tmp_path, pki, reactor_thread,
                                                                                  in_process, capsys):
    from adapters.storage.factory import open_store

    url = f"sqlite:///{tmp_path / 'day.db'}"
    opened = open_store(url)
    try:
        world = World(opened, pki, in_process)
        run_day(world, reactor_thread)
    finally:
        opened.close()
    assert vgw(["audit", "reconcile", "--store", url]) == 0
    assert "reconciled:" in capsys.readouterr().out
    import sqlite3

    conn = sqlite3.connect(tmp_path / "day.db")
    conn.execute("UPDATE payments SET amount = amount + 1 WHERE rowid = 1")
    conn.commit()
    conn.close()
    assert vgw(["audit", "reconcile", "--store", url, "--json"]) == 1
    out = capsys.readouterr().out
    assert '"ok": false' in out and "payment lines hold" in out


class FlakyStore:
    """The store, but its first ``failures`` report writes fail as a database outage would."""

    def __init__(self, store, failures: int) -> None:
        self._store = store
        self.failures = failures

    def record_report(self, write):
        if self.failures:
            self.failures -= 1
            raise StoreError("sqlite write failed: disk I/O error (simulated)")
        return self._store.record_report(write)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_store_outage_puts_reports_back_in_their_queue_instead_of_dead_lettering_them(store, pki, reactor_thread,
                                                                                      in_process, monkeypatch):
    import adapters.bank.exchange as bank_exchange

    monkeypatch.setattr(bank_exchange, "RETRY_DELAY", 0.05)
    world = World(store, pki, in_process, return_rate=0.0)
    flaky = FlakyStore(store, failures=3)
    world.intake.store = flaky
    run_day(world, reactor_thread)
    assert flaky.failures == 0 and world.dead == [] and in_process.dead == []
    assert_reconciled(world)


def test_lines_without_a_final_answer_are_flagged_unconfirmed_once(store, pki, reactor_thread, in_process):
    world = World(store, pki, in_process)
    world.batcher.batch_all()
    lines = len(world.lines())
    assert store.flag_unconfirmed(NOW - datetime.timedelta(hours=1), NOW) == 0  # sent just now: not yet
    later = NOW + datetime.timedelta(days=2)
    assert store.flag_unconfirmed(later - datetime.timedelta(hours=24), later) == lines
    assert store.flag_unconfirmed(later - datetime.timedelta(hours=24), later) == 0  # flagged once
    assert store.bank_totals()["unconfirmed"] == lines
    message = store.bank_messages("out")[0]
    for _, report in world.bank.receive(message.body):
        world.intake.handle(report)
    assert store.bank_totals()["unconfirmed"] == lines - len(store.payments_of_message(message.message_id))


def test_vgw_bank_resend_sends_a_lost_message_again_and_the_bank_books_nothing_twice(tmp_path, pki, reactor_thread,
                                                                                   in_process, capsys):
    """The bank lost a confirmed transfer message: an operator has the relay send the same bytes again."""
    from adapters.storage.factory import open_store

    url = f"sqlite:///{tmp_path / 'resend.db'}"
    opened = open_store(url)
    try:
        world = World(opened, pki, in_process, return_rate=0.0)
        world.batcher.batch_all()
        lost = opened.unsent_messages()[0]
        opened.mark_sent(lost.message_id, NOW)  # confirmed by the broker, then lost before the bank saw it
        call(reactor_thread, world.connect)
        assert call(reactor_thread, world.relay.pump) == len(opened.bank_messages("out")) - 1
        eventually(reactor_thread, lambda: {r.state for r in opened.payments_of_message(lost.message_id)}
                   == {LineState.PENDING} and world.bank.counts.messages == len(opened.bank_messages("out")) - 1,
                   "everything but the lost message answered")
        assert vgw(["bank", "resend", "--store", url, "--operator", "ops-1", "--reason", "ticket 42",
                    lost.message_id]) == 0
        assert "publishes the same signed bytes again" in capsys.readouterr().out
        assert vgw(["bank", "resend", "--store", url, "--operator", "ops-1", "--reason", "again",
                    lost.message_id]) == 2  # unsent already: refused, nothing changed
        assert call(reactor_thread, world.relay.pump) == 1
        eventually(reactor_thread, world.settled, "the lost message paid after the resend")
        call(reactor_thread, world.relay.pump)  # any later pump finds nothing to send
        world.bank.receive(lost.body)  # and were it delivered twice after all, the bank books it once
        assert max(world.bank.booked.values()) == 1
        assert [e.event.action for e in opened.history(f"message:{lost.message_id}")] == ["bank.resend"]
        handled = world.intake.counts
        eventually(reactor_thread, lambda: handled.reports + handled.repeats == world.bank.counts.reports,
                   "every report handled")
        assert_reconciled(world)
    finally:
        quiet(reactor_thread)
        opened.close()
