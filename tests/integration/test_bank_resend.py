"""Transfer messages the bank never fully answered are sent again by themselves, on SQLite and a real
PostgreSQL: the store finds them (sent before a cutoff, a line still pending or accepted), and the
:class:`~adapters.bank.worker.BankWorker`'s sweep makes them unsent with a ``bank.resend`` audit entry, so
the relay publishes the same signed bytes again and the bank answers with its earlier reports.

The worker runs on the in-process transport with short loops and a clock the test moves: nothing is
re-sent before the interval, and right after the test moves the clock past it the sweep re-sends. The
bank is the simulated one behind a lossy link: the answers to the first transfer message it books are lost
on the way back, or replaced by a status report on all its lines but one.
"""

from __future__ import annotations

import collections
import datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import defer
from twisted.internet.threads import deferToThread

from adapters.bank.transport import InProcessBankTransport
from adapters.bank.worker import BankWorker, BankWorkerSettings
from adapters.cli.main import main as vgw
from gateway.audit import verify_chain
from gateway.bank.pain001 import TAIPEI_TREASURY
from gateway.bank.payments import LineState
from gateway.bank.report_writing import build_pain002
from gateway.bank.resend import RESEND_ACTION, RESEND_ACTOR
from gateway.bank.settlement import REPORT_ROUTING, SigningIdentity
from gateway.store import AuditEvent
from simulators.pki.layout import load_key

from .test_bank_exchange import NOW, World, assert_reconciled
from .test_store_contract import backend, pg_database, store  # noqa: F401
from .twisted_reactor import call, eventually, reactor_thread  # noqa: F401

INTERVAL = datetime.timedelta(minutes=30)
FINAL = (LineState.PAID, LineState.RETURNED)


def open_lines(store, message_id: str) -> int:
    return sum(1 for row in store.payments_of_message(message_id) if row.state not in FINAL)


def audit_log(store) -> list:
    entries: list = []
    while page := store.audit_entries(after_seq=entries[-1].seq if entries else 0, limit=1000):
        entries.extend(page)
    return entries


def answer(world: World, message) -> None:
    """The bank books ``message`` and its reports are applied, here and now."""
    for _, report in world.bank.receive(message.body):
        assert world.intake.handle(report) == "ack"


def all_but_one_report(world: World, message_id: str, report_id: str) -> bytes:
    """A signed status report on every line of ``message_id`` but its last, saying what the bank decides for
    each (paid, or rejected with its reason), so the bank's own reports agree with it later."""
    statuses = [(r.end_to_end_id, "RJCT" if (reason := world.bank.returns(r.end_to_end_id)) else "ACSC", reason, None,
                 r.amount, None, r.payment_info_id) for r in world.store.payments_of_message(message_id)[:-1]]
    document = build_pain002(message_id=report_id, created_at=NOW, original_message_id=message_id,
                             group_status="PART", tx_statuses=statuses)
    return world.bank._sealed("pain.002.001.10", document, report_id, NOW)[1]


# --- the store's query --------------------------------------------------------------------------------------


def test_unanswered_messages_are_those_sent_before_the_cutoff_with_a_line_still_open_oldest_first(store, pki):
    world = World(store, pki, transport=None, return_rate=0.0, payments=100)
    world.batcher.batch_all()
    m = store.bank_messages("out", limit=1000)
    assert len(m) >= 4, "100 lines at 25 per message"
    cutoff = NOW - INTERVAL
    assert store.unanswered_messages(NOW + INTERVAL) == []  # nothing sent yet: the relay's business
    store.mark_sent(m[0].message_id, NOW - datetime.timedelta(hours=2))
    store.mark_sent(m[1].message_id, NOW - datetime.timedelta(hours=1))
    store.mark_sent(m[2].message_id, NOW - datetime.timedelta(hours=3))
    store.mark_sent(m[3].message_id, NOW)  # sent too recently
    answer(world, m[1])  # fully answered
    assert [u.message_id for u in store.unanswered_messages(cutoff)] == [m[2].message_id, m[0].message_id]
    assert [u.message_id for u in store.unanswered_messages(cutoff, limit=1)] == [m[2].message_id]
    assert store.unanswered_messages(NOW - datetime.timedelta(hours=3)) == []  # strictly before
    # the bank answered all of m[0]'s lines but one
    assert world.intake.handle(all_but_one_report(world, m[0].message_id, "P2PART0")) == "ack"
    [oldest, partial] = store.unanswered_messages(cutoff)
    assert (partial.message_id, partial.open_lines, partial.payment_count, partial.resends) == (
        m[0].message_id, 1, m[0].payment_count, 0)
    assert (oldest.open_lines, oldest.payment_count, oldest.sha256, oldest.sent_at) == (
        m[2].payment_count, m[2].payment_count, m[2].sha256, NOW - datetime.timedelta(hours=3))


def test_a_resend_counts_in_the_row_and_is_refused_when_the_message_was_sent_again_since(store, pki):
    world = World(store, pki, transport=None, return_rate=0.0)
    world.batcher.batch_all()
    message = store.bank_messages("out")[0]
    store.mark_sent(message.message_id, NOW - datetime.timedelta(hours=1))
    event = AuditEvent(NOW, RESEND_ACTOR, RESEND_ACTION, f"message:{message.message_id}", message.sha256,
                       {"attempt": 1})
    audit = len(audit_log(store))
    # sent an hour ago, after this cutoff: as when another worker re-sent it and the relay sent it again since
    assert not store.mark_unsent(message.message_id, event, sent_before=NOW - datetime.timedelta(hours=2))
    assert message.message_id not in {u.message_id for u in store.unsent_messages()}
    assert store.mark_unsent(message.message_id, event, sent_before=NOW - INTERVAL)
    assert message.message_id in {u.message_id for u in store.unsent_messages()}
    assert not store.mark_unsent(message.message_id, event)  # unsent already
    assert len(audit_log(store)) == audit + 1
    store.mark_sent(message.message_id, NOW - datetime.timedelta(hours=1))
    [again] = store.unanswered_messages(NOW - INTERVAL)
    assert again.resends == 1
    assert store.unanswered_messages(NOW - INTERVAL, max_resends=1) == []
    assert [u.message_id for u in store.unanswered_messages(NOW - INTERVAL, max_resends=2)] == [message.message_id]


# --- the worker ------------------------------------------------------------------------------------------------


class LossyLink:
    """The simulated bank on the transfers queue; while ``spoiling``, the answers to the first transfer message
    it books are lost on the way back (``spoil="lost"``) or replaced by a status report on all its lines but
    one (``"all-but-one"``). The relay may deliver a message twice (harmless, the bank dedups), so every
    delivery of that message is spoiled until the test stops it; then it gets the bank's own answers."""

    def __init__(self, world: World, spoil: str) -> None:
        self.world = world
        self.spoil = spoil
        self.spoiled: str | None = None
        self.spoiling = True
        self._partial_sent = False
        self.published = 0
        self.deliveries: collections.Counter[str] = collections.Counter()
        self.busy = 0

    def attach(self, transport) -> None:
        @defer.inlineCallbacks
        def handler(body: bytes, headers: dict, message_id: str | None):
            self.deliveries[message_id] += 1
            self.busy += 1
            try:
                return (yield self._answer(transport, body, message_id))
            finally:
                self.busy -= 1

        transport.consume(transport.topology.transfers_queue, handler)

    @defer.inlineCallbacks
    def _answer(self, transport, body: bytes, message_id: str):
        answers = yield deferToThread(self.world.bank.receive, body)
        if self.spoiled is None:
            self.spoiled = message_id
        if message_id == self.spoiled and self.spoiling:
            answers = []
            if self.spoil == "all-but-one" and not self._partial_sent:
                self._partial_sent = True
                answers = [("P2PART", (yield deferToThread(all_but_one_report, self.world, message_id, "P2PART")))]
        yield defer.gatherResults([transport.publish(mid, REPORT_ROUTING, report, {"message-type": "report"})
                                   for mid, report in answers])
        self.published += len(answers)
        return "ack"


@pytest.mark.parametrize("spoil", ["lost", "all-but-one"])
def test_a_message_the_bank_did_not_fully_answer_is_sent_again_after_the_interval_and_its_lines_end_final(
        backend, store, pki, reactor_thread, spoil):
    reactor = reactor_thread
    transport = InProcessBankTransport(reactor=reactor)
    world = World(store, pki, transport, return_rate=0.2)
    manifest = pki.manifest
    signer = SigningIdentity(load_key(Path(manifest["gateway"]["key"])), world.gateway_cert, TAIPEI_TREASURY)
    now = [NOW]
    registry = CollectorRegistry()
    settings = BankWorkerSettings(batch_seconds=0.05, relay_seconds=0.05, sweep_seconds=0.05, max_per_message=25,
                                  resend_after=INTERVAL)
    worker = BankWorker(store, transport, signer, world.bank_cert, settings=settings, reactor=reactor,
                        clock=lambda: now[0], registry=registry)
    link = LossyLink(world, spoil)
    handled = worker.intake.counts

    def quiet() -> bool:
        return handled.reports + handled.repeats + handled.dead == link.published

    def all_booked() -> bool:
        sent = {m.message_id for m in store.bank_messages("out", limit=1000)}  # batched: all in one transaction
        return bool(sent) and sent == set(link.deliveries) and link.busy == 0 and quiet()

    try:
        call(reactor, worker.start)
        call(reactor, link.attach, transport)
        eventually(reactor, all_booked, "every transfer message booked and every report that came back applied",
                   timeout=60)
        spoiled = link.spoiled
        unanswered = open_lines(store, spoiled)
        assert unanswered == (store.bank_message("out", spoiled).payment_count if spoil == "lost" else 1) > 0
        assert all(row.state in FINAL for row in world.lines() if row.message_id != spoiled)
        # sent just now: not yet, however often the sweep runs
        assert call(reactor, worker.resend_unanswered) == 0
        assert store.history(f"message:{spoiled}") == []

        link.spoiling = False
        now[0] = NOW + INTERVAL + datetime.timedelta(minutes=1)  # the sweep's next run re-sends it
        eventually(reactor, lambda: world.settled() and quiet(), "the spoiled message's lines final after the re-send",
                   timeout=60)
        [entry] = store.history(f"message:{spoiled}")
        assert (entry.event.actor, entry.event.action, entry.event.at) == (RESEND_ACTOR, RESEND_ACTION, now[0])
        lines = store.bank_message("out", spoiled).payment_count
        assert entry.event.detail == {"reason": "no final answer after 1800 s", "attempt": 1,
                                      "open_lines": unanswered, "lines": lines}
        assert link.deliveries[spoiled] >= 2 and max(world.bank.booked.values()) == 1
        assert registry.get_sample_value("vgw_bank_messages_resent_total") == 1
        # a fully answered message is never sent again, however late it gets
        messages = store.bank_messages("out", limit=1000)
        assert [m.message_id for m in messages if store.history(f"message:{m.message_id}")] == [spoiled]
        now[0] = NOW + datetime.timedelta(days=2)
        assert call(reactor, worker.resend_unanswered) == 0
        assert store.unanswered_messages(now[0]) == []
        assert handled.dead == 0
    finally:
        call(reactor, worker.stop)
    assert_reconciled(world)
    assert verify_chain(audit_log(store)).ok
    assert vgw(["audit", "verify", "--store", backend.url]) == 0


def test_a_message_is_sent_again_by_itself_at_most_max_resends_times(store, pki, reactor_thread):
    """A bank that never answers: each interval one more re-send, until the cap; the row counts them."""
    reactor = reactor_thread
    transport = InProcessBankTransport(reactor=reactor)
    world = World(store, pki, transport, return_rate=0.0, payments=10)
    signer = SigningIdentity(load_key(Path(pki.manifest["gateway"]["key"])), world.gateway_cert, TAIPEI_TREASURY)
    now = [NOW]
    settings = BankWorkerSettings(batch_seconds=0.05, relay_seconds=0.05, sweep_seconds=3600, resend_after=INTERVAL,
                                  max_resends=2)
    worker = BankWorker(store, transport, signer, world.bank_cert, settings=settings, reactor=reactor,
                        clock=lambda: now[0])
    try:
        call(reactor, worker.start)  # nobody consumes the transfers queue: the bank is silent
        eventually(reactor, lambda: world.lines() and not store.unsent_messages(), "every message sent")
        sent = len(store.bank_messages("out", limit=1000))
        for attempt in (1, 2):
            now[0] += INTERVAL + datetime.timedelta(minutes=1)
            assert call(reactor, worker.resend_unanswered) == sent
            eventually(reactor, lambda: not store.unsent_messages(), f"re-send {attempt} published")
        now[0] += INTERVAL + datetime.timedelta(minutes=1)
        assert call(reactor, worker.resend_unanswered) == 0  # the cap: an operator's turn
        assert {u.resends for u in store.unanswered_messages(now[0])} == {2}
        assert transport.stats.confirmed >= 3 * sent
        details = [e.event.detail["attempt"] for e in audit_log(store)
                   if e.event.action == RESEND_ACTION]
        assert sorted(details) == [1] * sent + [2] * sent
    finally:
        call(reactor, worker.stop)
