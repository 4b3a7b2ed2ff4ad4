"""The bank exchange across a RabbitMQ restart: stopping and restarting the broker mid-flow loses nothing and
pays nothing twice.

A broker of the test's own (:mod:`.private_rabbitmq`; stopping the shared one would break every other
test), its data dir kept between stop and start as in production, so the durable quorum queues and the
persistent messages in them outlive the restart. On it: a :class:`~adapters.bank.worker.BankWorker` over
one :class:`~adapters.bank.amqp_transport.AmqpBankTransport` (short loops, small messages, so there are many), and
the simulated bank attached through a SECOND transport, a connection of its own, as the bank is a party of
its own. A SQLite store holds a few hundred treasury-accepted payments.

The broker is stopped (SIGTERM) once some lines are settled and many are not: transfer messages sit in
the transfers queue or in the bank's hands, reports in the reports queue or in the intake's hands. While it
is down, more vouchers are accepted: the batcher writes their messages, the relay cannot send them and
keeps them. After a deliberate downtime the broker is started again on the same data; both transports
reconnect by themselves. Then: every line is paid or returned and every voucher settled, the bank booked
no EndToEndId twice, the paid lines are exactly the bank's bookings, the outbox is empty, nothing was
dead-lettered, and ``reconcile`` proves the sums.
"""

from __future__ import annotations

import datetime
import threading
import time
from pathlib import Path

import pika
from prometheus_client import CollectorRegistry

from adapters.amqp.thread import Backoff
from adapters.bank.amqp_transport import AmqpBankTransport
from adapters.bank.transport import BankTopology
from adapters.bank.worker import BankWorker, BankWorkerSettings
from adapters.storage.factory import open_store
from gateway.bank.pain001 import TAIPEI_TREASURY
from gateway.bank.payments import LineState
from gateway.bank.settlement import SigningIdentity
from gateway.reconciliation import reconcile
from simulators.bank import SimulatedBank
from simulators.bank_day import day_of_vouchers, place_accepted
from simulators.pki.layout import load_cert, load_key

from .test_amqp_broker_restart import broker, queue_depth, wait_until  # noqa: F401  (broker: a fixture)
from .twisted_reactor import call, eventually, reactor_thread  # noqa: F401  (reactor_thread is a fixture)

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
PAYMENTS = 400
"""Lines accepted before the restart."""
LATE_PAYMENTS = 60
"""Lines accepted while the broker is down (other agencies, so their allotments are loaded apart)."""
DOWNTIME = 2.0
"""Seconds the broker stays down (deliberately: the reconnect attempts fail, the relay keeps its rows)."""
SETTINGS = BankWorkerSettings(batch_seconds=0.2, relay_seconds=0.2, sweep_seconds=0.5, max_per_message=20)
BACKOFF = Backoff(first=0.2, cap=1.0)


def clock() -> datetime.datetime:
    return NOW


def keys_of(vouchers) -> list[tuple[str, int]]:
    return [(v.voucher_id, v.revision) for v in vouchers]


def lines_of(store, vouchers) -> list:
    return [row for rows in store.payments_of_many(keys_of(vouchers)).values() for row in rows]


def settled_lines(store, vouchers) -> int:
    return sum(1 for row in lines_of(store, vouchers) if row.state in (LineState.PAID, LineState.RETURNED))


def all_settled(store, vouchers) -> bool:
    lines = lines_of(store, vouchers)
    return (len(lines) == sum(len(v.lines) for v in vouchers)
            and all(row.state in (LineState.PAID, LineState.RETURNED) for row in lines)
            and all(store.get(*key).status in ("paid", "returned") for key in keys_of(vouchers)))


def test_stopping_and_restarting_rabbitmq_mid_flow_loses_nothing_and_pays_nothing_twice(broker, reactor_thread,
                                                                                       pki, tmp_path):
    reactor = reactor_thread
    manifest = pki.manifest
    gateway_cert = load_cert(Path(manifest["gateway"]["cert"]))
    bank_cert = load_cert(Path(manifest["bank"]["cert"]))
    signer = SigningIdentity(load_key(Path(manifest["gateway"]["key"])), gateway_cert, TAIPEI_TREASURY)
    bank = SimulatedBank(gateway_cert, load_key(Path(manifest["bank"]["key"])), bank_cert, clock, seed=5,
                         return_rate=0.1)
    # The bank answers its first transfer message, then holds the next (in its hands, unanswered) until the
    # broker has gone: the restart then cuts the flow in the middle however fast the machine is.
    broker_gone = threading.Event()
    answer = bank.answer
    bookings: list[bytes] = []

    def held_after_the_first(body: bytes):
        if bookings:
            broker_gone.wait(60)
        bookings.append(body)
        return answer(body)
    bank.answer = held_after_the_first
    vouchers = day_of_vouchers(PAYMENTS, agencies=["379000001A", "379000002A"], today=NOW.date(), seed=11)
    late = day_of_vouchers(LATE_PAYMENTS, agencies=["379000003A"], today=NOW.date(), seed=12)
    everything = vouchers + late
    store = open_store(f"sqlite:///{tmp_path / 'bank.db'}")
    try:
        place_accepted(store, vouchers, at=NOW)  # while the broker boots (the fixture launched it)
        broker.wait_until_ready()
        parameters = pika.URLParameters(broker.url)
        topology = BankTopology()  # the broker is the test's own: the production names
        # The bank takes one transfer message at a time (prefetch 1); the hold above keeps the second.
        bank_transport = AmqpBankTransport(parameters, topology, reactor=reactor, backoff=BACKOFF, prefetch=1)
        gateway_transport = AmqpBankTransport(parameters, topology, reactor=reactor, backoff=BACKOFF)
        transports = (gateway_transport, bank_transport)
        registry = CollectorRegistry()
        worker = BankWorker(store, gateway_transport, signer, bank_cert, settings=SETTINGS, reactor=reactor,
                            clock=clock, registry=registry)
        try:
            call(reactor, bank_transport.start)
            call(reactor, bank.attach, bank_transport, topology.transfers_queue)
            call(reactor, worker.start)

            # Mid-flow: the first lines are settled; the rest are in the transfers queue, in the bank's hands,
            # in the reports queue or in the intake's hands.
            wait_until(lambda: settled_lines(store, vouchers) > 0, "a first line settled before the broker goes",
                       60)
            broker.stop()  # SIGTERM, and wait until it has exited
            broker_gone.set()
            stopped_at = time.monotonic()
            eventually(reactor, lambda: not any(t.ready for t in transports),
                       "both transports to see the broker go", timeout=10)
            lines = lines_of(store, vouchers)
            sent = ({m.message_id for m in store.bank_messages("out", limit=10_000)}
                    - {m.message_id for m in store.unsent_messages(10_000)})
            answered = sum(1 for row in lines if row.state in (LineState.PAID, LineState.RETURNED))
            awaited = sum(1 for row in lines if row.state is LineState.PENDING and row.message_id in sent)
            assert 0 < answered < PAYMENTS and awaited > 0, \
                f"the broker went mid-flow: {answered} lines answered, {awaited} sent and awaiting an answer"

            # While it is down, more vouchers are accepted and batched into the outbox, which the relay
            # cannot empty.
            place_accepted(store, late, at=NOW)
            wait_until(lambda: len(lines_of(store, late)) == LATE_PAYMENTS,
                       "the vouchers accepted while the broker is down to be batched", 20)
            left = DOWNTIME - (time.monotonic() - stopped_at)
            if left > 0:
                time.sleep(left)  # the deliberate downtime: reconnect attempts and relay pumps fail meanwhile
            unsent = {m.message_id for m in store.unsent_messages(10_000)}
            assert {row.message_id for row in lines_of(store, late)} <= unsent, "the relay keeps what it cannot send"
            assert not any(t.ready for t in transports)

            broker.start()  # on the same data dir: the quorum queues and the messages in them come back
            eventually(reactor, lambda: all(t.ready for t in transports), "both transports to reconnect",
                       timeout=60)
            assert all(t.stats.reconnects >= 1 for t in transports)
            wait_until(lambda: all_settled(store, everything), "every line and voucher paid or returned", 120)
            wait_until(lambda: store.unsent_messages() == [], "the outbox to be empty", 20)
            eventually(reactor, lambda: registry.get_sample_value("vgw_bank_messages_unsent") == 0,
                       "the unsent gauge to read 0", timeout=20)
        finally:
            broker_gone.set()  # a test failing before the stop must not leave the bank's hold waiting
            call(reactor, worker.stop)
            call(reactor, bank_transport.stop)
            # the loops' last runs (a sweep, a pump) end in the thread pool before the store is read or closed
            eventually(reactor, lambda: not reactor.getThreadPool().working, "the thread pool to be idle",
                       timeout=30)

        lines = lines_of(store, everything)
        assert len(lines) == PAYMENTS + LATE_PAYMENTS
        for voucher in everything:
            states = {row.state for row in store.payments_of(voucher.voucher_id, voucher.revision)}
            assert states <= {LineState.PAID, LineState.RETURNED}
            expected = "returned" if LineState.RETURNED in states else "paid"
            assert store.get(voucher.voucher_id, voucher.revision).status == expected
        # The bank: each transfer message booked once, no EndToEndId twice, exactly the lines paid.
        paid = [row for row in lines if row.state is LineState.PAID]
        returned = [row for row in lines if row.state is LineState.RETURNED]
        assert paid and returned, "a 10% return rate over 460 lines gives both outcomes"
        assert max(bank.booked.values()) == 1 and bank.counts.duplicate_payments == 0
        assert {row.end_to_end_id for row in paid} == set(bank.booked)
        assert (bank.counts.paid, bank.counts.returned) == (len(paid), len(returned))
        assert bank.counts.messages == len(store.bank_messages("out", limit=10_000))
        assert bank.counts.refused_messages == 0
        # The gateway: nothing left to send, nothing dead-lettered, the sums hold.
        assert store.unsent_messages() == []
        assert worker.intake.counts.dead == 0 and worker.intake.counts.unmatched == 0
        assert [t.stats.dead_lettered for t in transports] == [0, 0]
        assert queue_depth(broker.url, topology.dead_letter_queue) == 0
        balances = dict(store.budget_balances())
        assert sum(b.consumed for b in balances.values()) == sum(row.amount for row in paid)
        assert sum(b.reserved for b in balances.values()) == 0
        result = reconcile(store.reconciliation_facts())
        assert result.ok, result.discrepancy
        assert result.checked["by_state"]["paid"]["count"] == len(paid)
    finally:
        store.close()
