"""The bank transport's contract, run against both implementations: in process, and over a real RabbitMQ.

RabbitMQ comes from VGW_TEST_AMQP_URL (``scripts/with-test-services`` sets it); without it the AMQP cases
fail, on purpose. Each test declares its own topology (a unique prefix) and deletes it afterwards. The
transports live on Twisted's reactor, which runs in a thread of its own (:mod:`.twisted_reactor`); the
test's thread only ever asks the reactor thread to do something and waits, with a deadline.

The broker-restart case needs a broker of its own (:mod:`.private_rabbitmq`), as the intake's does.
"""

from __future__ import annotations

import os
import socket
import uuid

import pika
import pika.exceptions
import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import defer, error, task
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from adapters.amqp.thread import Backoff
from adapters.bank.amqp_transport import AmqpBankTransport
from adapters.bank.transport import (
    ACK,
    DEAD,
    BankTopology,
    IBankTransport,
    InProcessBankTransport,
    TransportLost,
    TransportRefused,
    settle_all,
)
from simulators.bench.transport import delete_topology, measure_publish

from .test_amqp_broker_restart import broker, queue_depth  # noqa: F401  (broker: the private broker fixture)
from .twisted_reactor import call, eventually, reactor_thread  # noqa: F401  (reactor_thread is a fixture)


def amqp_parameters() -> pika.URLParameters:
    url = os.environ.get("VGW_TEST_AMQP_URL")
    if not url:
        pytest.fail("VGW_TEST_AMQP_URL is not set: the AMQP bank transport tests need a real RabbitMQ. Run them "
                    "under scripts/with-test-services (make test), or export VGW_TEST_AMQP_URL.", pytrace=False)
    return pika.URLParameters(url)


@pytest.fixture
def topology() -> BankTopology:
    return BankTopology().prefixed(f"test.{uuid.uuid4().hex[:8]}.")


@pytest.fixture(params=["in-process", "amqp"])
def make(request, reactor_thread, topology):
    """make(**options) -> a started transport of the parametrised kind on the test's topology; stopped (and the
    topology deleted from the broker) at the end."""
    reactor = reactor_thread
    made = []
    parameters = amqp_parameters() if request.param == "amqp" else None

    def make(**options):
        if parameters is None:
            transport = InProcessBankTransport(topology, reactor=reactor, **options)
        else:
            transport = AmqpBankTransport(parameters, topology, reactor=reactor, **options)
        made.append(transport)
        call(reactor, transport.start)
        return transport

    yield make
    for transport in made:
        call(reactor, transport.stop)
    if parameters is not None:
        delete_topology(parameters, topology)


class Inbox:
    """A handler that keeps what it was handed and answers ``verdict`` (a value, or a function of the body)."""

    def __init__(self, verdict=ACK) -> None:
        self.verdict = verdict
        self.messages: list[tuple[bytes, dict, str | None]] = []

    def __call__(self, body: bytes, headers: dict, message_id: str | None):
        self.messages.append((body, headers, message_id))
        return self.verdict(body) if callable(self.verdict) else self.verdict


def publish_all(transport, messages) -> defer.Deferred:
    """Publish every (message_id, routing, body) at once; fires with [(ok, failure or None)] in that order."""
    return settle_all(transport.publish(message_id, routing, body, {}) for message_id, routing, body in messages)


# --- the contract, both implementations ----------------------------------------------------------------------

def test_both_transports_provide_the_interface(make, reactor_thread):
    transport = make()
    assert verifyObject(IBankTransport, transport)
    assert transport.ready


def test_a_message_goes_round_trip_with_its_id_and_headers(make, reactor_thread, topology):
    reactor = reactor_thread
    transport = make()
    inbox = Inbox(verdict=lambda body: task.deferLater(reactor, 0.01, lambda: ACK))  # a handler's Deferred
    call(reactor, transport.consume, topology.reports_queue, inbox)

    call(reactor, transport.publish, "pain002-0001", topology.reports_routing, b"<Document>report</Document>",
         {"kind": "pain.002", "lines": 3})
    eventually(reactor, lambda: len(inbox.messages) == 1, "the report to be handed to the handler")

    [(body, headers, message_id)] = inbox.messages
    assert (body, message_id) == (b"<Document>report</Document>", "pain002-0001")
    assert headers["kind"] == "pain.002" and headers["lines"] == 3
    assert transport.stats.confirmed == 1 and transport.stats.dead_lettered == 0


def test_publishes_are_pipelined_many_in_flight_at_once(make, reactor_thread, topology):
    reactor = reactor_thread
    transport = make()
    messages = [(f"m-{i}", topology.transfers_routing, b"x" * 200) for i in range(300)]
    results = call(reactor, publish_all, transport, messages)
    assert all(ok for ok, _ in results)
    assert transport.stats.confirmed == 300
    assert transport.stats.max_in_flight > 1, "every publish waited for the previous one's confirm"


def test_the_window_bounds_messages_in_flight_and_the_rest_wait(make, reactor_thread, topology):
    reactor = reactor_thread
    transport = make(window_messages=8)

    def publish_and_look():
        settled = publish_all(transport, [(f"m-{i}", topology.transfers_routing, b"x") for i in range(100)])
        return settled, (transport.window.count, transport.window.waiting)

    settled, (in_flight, waiting) = call(reactor, publish_and_look)
    assert (in_flight, waiting) == (8, 92)
    results = call(reactor, lambda: settled)
    assert all(ok for ok, _ in results), "a publish over the window waits; it is not refused"
    assert transport.stats.max_in_flight == 8 and transport.stats.confirmed == 100


def test_the_window_bounds_bytes_in_flight_and_the_rest_wait(make, reactor_thread, topology):
    reactor = reactor_thread
    transport = make(window_bytes=10_000)

    def publish_and_look():
        settled = publish_all(transport, [(f"m-{i}", topology.transfers_routing, bytes(4096)) for i in range(10)])
        return settled, (transport.window.count, transport.window.bytes, transport.window.waiting)

    settled, now = call(reactor, publish_and_look)
    assert now == (2, 8192, 8), "two 4 KiB messages fit in 10,000 bytes; the third waits"
    results = call(reactor, lambda: settled)
    assert all(ok for ok, _ in results)
    assert transport.stats.max_in_flight_bytes == 8192 and transport.stats.max_in_flight == 2


def test_an_unroutable_publish_is_refused_and_only_that_one(make, reactor_thread, topology):
    reactor = reactor_thread
    transport = make()
    messages = [("ok-1", topology.transfers_routing, b"1"), ("lost-1", "nowhere", b"2"),
                ("ok-2", topology.reports_routing, b"3"), ("lost-2", "nowhere", b"4"),
                ("ok-3", topology.transfers_routing, b"5")]
    results = call(reactor, publish_all, transport, messages)

    assert [ok for ok, _ in results] == [True, False, True, False, True]
    for (message_id, _, _), (ok, failure) in zip(messages, results, strict=True):
        if not ok:
            assert failure.check(TransportRefused)
            assert failure.value.message_id == message_id and failure.value.why.startswith("unroutable")
    assert (transport.stats.confirmed, transport.stats.refused) == (3, 2)


def test_a_dead_verdict_dead_letters_the_message_with_its_body(make, reactor_thread, topology):
    reactor = reactor_thread
    transport = make()
    handled, dead = Inbox(verdict=DEAD), Inbox()
    call(reactor, transport.consume, topology.transfers_queue, handled)
    call(reactor, transport.consume, topology.dead_letter_queue, dead)

    call(reactor, transport.publish, "t-1", topology.transfers_routing, b"<Document>transfer</Document>",
         {"kind": "pain.001"})
    eventually(reactor, lambda: len(dead.messages) == 1, "the message in the dead-letter queue")

    [(body, headers, message_id)] = dead.messages
    assert (body, message_id, headers["kind"]) == (b"<Document>transfer</Document>", "t-1", "pain.001")
    assert headers["x-first-death-queue"] == topology.transfers_queue
    assert headers["x-first-death-reason"] == "rejected"
    assert len(handled.messages) == 1, "dead-lettered, not requeued"
    assert transport.stats.dead_lettered == 1 and transport.stats.handler_errors == 0


@pytest.mark.parametrize("failing", ["raises", "fails-its-deferred", "answers-neither"])
def test_a_failing_handler_dead_letters_the_message_and_is_counted(make, reactor_thread, topology, failing):
    reactor = reactor_thread
    transport = make()

    def handler(body, headers, message_id):
        if failing == "raises":
            raise ValueError("a bug in the handler")
        if failing == "fails-its-deferred":
            return defer.fail(ValueError("a bug in the handler"))
        return "maybe"

    dead = Inbox()
    call(reactor, transport.consume, topology.reports_queue, handler)
    call(reactor, transport.consume, topology.dead_letter_queue, dead)
    call(reactor, transport.publish, "r-1", topology.reports_routing, b"<Document>camt.054</Document>", {})
    eventually(reactor, lambda: len(dead.messages) == 1, "the message in the dead-letter queue")

    assert dead.messages[0][0] == b"<Document>camt.054</Document>" and dead.messages[0][2] == "r-1"
    assert transport.stats.handler_errors == 1 and transport.stats.dead_lettered == 1


def test_publishing_when_stopped_fails_with_transport_lost(make, reactor_thread, topology):
    reactor = reactor_thread
    transport = make()
    call(reactor, transport.stop)
    assert not transport.ready
    with pytest.raises(TransportLost):
        call(reactor, transport.publish, "late", topology.transfers_routing, b"x", {})


def test_measure_publish_reports_the_rate_of_confirmed_publishes(make, reactor_thread):
    transport = make()
    result = call(reactor_thread, measure_publish, transport, 2000, 512)
    assert result["confirmed"] == 2000 and result["failed"] == 0
    assert result["msgs_per_s"] > 0 and result["max_in_flight"] > 1


# --- AMQP only -------------------------------------------------------------------------------------------------

def test_amqp_metrics_count_publishes_and_dead_letters(reactor_thread, topology):
    reactor, parameters, registry = reactor_thread, amqp_parameters(), CollectorRegistry()
    transport = AmqpBankTransport(parameters, topology, reactor=reactor, metrics=registry)
    call(reactor, transport.start)
    try:
        dead = Inbox()
        call(reactor, transport.consume, topology.transfers_queue, Inbox(verdict=DEAD))
        call(reactor, transport.consume, topology.dead_letter_queue, dead)
        call(reactor, publish_all, transport, [("a", topology.transfers_routing, b"a"), ("b", "nowhere", b"b")])
        eventually(reactor, lambda: len(dead.messages) == 1, "the message in the dead-letter queue")
        sample = registry.get_sample_value
        assert sample("vgw_bank_published_total") == 2 and sample("vgw_bank_confirmed_total") == 1
        assert sample("vgw_bank_refused_total", {"why": "unroutable"}) == 1
        assert sample("vgw_bank_in_flight") == 0 and sample("vgw_bank_connected") == 1
        assert sample("vgw_bank_dead_lettered_total", {"queue": topology.transfers_queue, "why": "rejected"}) == 1
    finally:
        call(reactor, transport.stop)
        delete_topology(parameters, topology)
    assert registry.get_sample_value("vgw_bank_connected") == 0


def test_amqp_start_reports_what_prevented_the_first_connect(reactor_thread, topology):
    reactor, parameters = reactor_thread, amqp_parameters()
    nobody = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    transport = AmqpBankTransport(nobody, topology, reactor=reactor)
    with pytest.raises(error.ConnectionRefusedError):
        call(reactor, transport.start)
    assert not transport.ready

    # A queue of that name exists with other arguments (a classic queue): the broker refuses the declaration.
    connection = pika.BlockingConnection(parameters)
    connection.channel().queue_declare(topology.transfers_queue, durable=True)
    connection.close()
    transport = AmqpBankTransport(parameters, topology, reactor=reactor)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="PRECONDITION_FAILED"):
            call(reactor, transport.start)
        assert not transport.ready
    finally:
        delete_topology(parameters, topology)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_amqp_transport_reconnects_when_its_queue_is_deleted_under_its_consumer(reactor_thread, topology):
    """The broker cancels a consumer whose queue goes away: the transport reconnects, which declares the queue
    again and consumes from it again."""
    reactor, parameters = reactor_thread, amqp_parameters()
    transport = AmqpBankTransport(parameters, topology, reactor=reactor, backoff=Backoff(first=0.1, cap=0.5))
    call(reactor, transport.start)
    try:
        reports = Inbox()
        call(reactor, transport.consume, topology.reports_queue, reports)
        connection = pika.BlockingConnection(parameters)
        connection.channel().queue_delete(topology.reports_queue)
        connection.close()
        eventually(reactor, lambda: transport.stats.reconnects == 1 and transport.ready, "a reconnect")
        call(reactor, transport.publish, "r-1", topology.reports_routing, b"<Document/>", {})
        eventually(reactor, lambda: [m[2] for m in reports.messages] == ["r-1"], "the report to be consumed")
    finally:
        call(reactor, transport.stop)
        delete_topology(parameters, topology)


class Producer:
    """What an outbox relay does: keeps ``outstanding`` publishes going, one more for each confirmed, and
    stops at the first TransportLost (it would retry later)."""

    def __init__(self, transport, routing: str, outstanding: int) -> None:
        self.transport, self.routing = transport, routing
        self.sent = 0
        self.confirmed: set[str] = set()
        self.lost: set[str] = set()
        self.other: list = []
        self.running = True
        for _ in range(outstanding):
            self._one()

    def _one(self) -> None:
        if self.running:
            self.sent += 1
            message_id = f"p-{self.sent}"
            self.transport.publish(message_id, self.routing, bytes(512), {}).addCallbacks(
                self._confirmed, self._failed, callbackArgs=(message_id,), errbackArgs=(message_id,))

    def _confirmed(self, _, message_id: str) -> None:
        self.confirmed.add(message_id)
        self._one()

    def _failed(self, failure, message_id: str) -> None:
        if failure.check(TransportLost):
            self.lost.add(message_id)
            self.running = False
        else:
            self.other.append(failure)

    @property
    def settled(self) -> bool:
        return len(self.confirmed) + len(self.lost) + len(self.other) == self.sent


def test_amqp_transport_survives_a_broker_restart(broker, reactor_thread, topology):
    reactor = reactor_thread
    reconnects = []

    def observe(event):
        if event.get("event") == "bank.reconnect" and event.get("exchange") == topology.exchange:
            reconnects.append(event)

    globalLogPublisher.addObserver(observe)
    broker.wait_until_ready()
    transport = AmqpBankTransport(pika.URLParameters(broker.url), topology, reactor=reactor,
                                  backoff=Backoff(first=0.2, cap=1.0), window_messages=500)
    try:
        call(reactor, transport.start)
        # The first report's handler is still busy when the broker goes; its verdict comes too late.
        held = defer.Deferred()
        reports = Inbox(verdict=lambda body: held if body == b"held" and not held.called else ACK)
        call(reactor, transport.consume, topology.reports_queue, reports)
        call(reactor, transport.publish, "held-report", topology.reports_routing, b"held", {})
        eventually(reactor, lambda: len(reports.messages) == 1, "the held report to be handed to its handler")

        # A relay publishing flat out: hundreds in flight, more waiting for the window, when the broker goes.
        producer = call(reactor, Producer, transport, topology.transfers_routing, 2000)
        eventually(reactor, lambda: len(producer.confirmed) >= 2000, "publishes to flow before the restart",
                   timeout=60)
        assert call(reactor, lambda: transport.window.count) > 0
        broker.stop()  # SIGTERM, and wait until it has exited

        eventually(reactor, lambda: not transport.ready, "ready to turn False")
        eventually(reactor, lambda: producer.settled, "every publish in flight to be settled")
        assert producer.lost and not producer.other, "in flight at the loss: TransportLost, nothing else"
        assert len(producer.lost) == producer.sent - len(producer.confirmed)
        in_flight_lost = transport.stats.published - transport.stats.confirmed
        assert in_flight_lost > 0, "some were handed to the broker, unconfirmed, when it went: TransportLost too"
        assert call(reactor, lambda: (transport.window.count, transport.window.waiting)) == (0, 0)
        call(reactor, held.callback, ACK)  # the late verdict: dropped, the broker delivers the report again
        with pytest.raises(TransportLost):  # while down: at once, not after a timeout
            call(reactor, transport.publish, "while-down", topology.transfers_routing, b"x", {})

        broker.start()
        eventually(reactor, lambda: transport.ready, "ready to turn True again after the restart", timeout=60)
        assert transport.stats.reconnects == 1
        assert [e["attempt"] for e in reconnects] == list(range(1, len(reconnects) + 1))
        assert reconnects[-1]["outcome"] == "connected"
        assert all(e["outcome"] == "failed" for e in reconnects[:-1])

        # Publishing again, and the consumer is back.
        call(reactor, transport.publish, "after-restart", topology.transfers_routing, b"again", {})
        call(reactor, transport.publish, "report-after", topology.reports_routing, b"<Document/>", {})
        eventually(reactor, lambda: [m[2] for m in reports.messages] == ["held-report", "held-report",
                                                                          "report-after"],
                   "the consumer to receive the held report again and a new one after the restart")
        # Every confirmed publish survived the restart (durable quorum queue, persistent messages); the lost
        # ones may or may not have arrived, which is why the relay publishes them again.
        depth = queue_depth(broker.url, topology.transfers_queue)
        assert len(producer.confirmed) + 1 <= depth <= producer.sent + 1

        # Stopping while the broker is away: between reconnect attempts, it stops at once.
        broker.stop()
        eventually(reactor, lambda: not transport.ready, "ready to turn False again")
        call(reactor, transport.stop, timeout=30)
    finally:
        globalLogPublisher.removeObserver(observe)
        call(reactor, transport.stop)
