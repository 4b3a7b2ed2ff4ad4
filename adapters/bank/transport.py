"""The bank transport: the port through which transfer orders leave for the bank and the bank's reports come
back, its topology, and an in-process implementation for the embedded default (one process, no broker).

The contract (:class:`IBankTransport`) is written for an outbox relay on one side and a report consumer on
the other, so it is at-least-once on both:

- ``publish`` fires only once the transport CONFIRMED the message (for AMQP: a publisher confirm of a
  persistent, mandatory message, i.e. the broker has written it to a queue). Until then the relay keeps
  its outbox row; on :class:`TransportRefused` it marks the row as refused (nothing will route it by
  itself), on :class:`TransportLost` it simply publishes the row again later. A message that was in flight
  when the connection died may have reached the queue all the same, so the bank side deduplicates by
  ``message_id`` (for a transfer: the MsgId; the EndToEndIds inside are stable too).
- Publishing is pipelined: many messages are in flight at once, each with its own Deferred, and the window
  of what is in flight is bounded by a count AND a number of bytes. A publish over the window is not
  refused: it waits (first come, first sent) and goes out as soon as confirms make room, so the relay can
  hand over a whole batch and let the window pace it.
- ``consume`` hands each delivery to a handler and settles it by the handler's verdict: ``'ack'`` (done)
  or ``'dead'`` (this message can never be handled: rejected without requeue, so the queue dead-letters it
  to the dead-letter exchange for an operator). A handler that raises, or fails its Deferred, or answers
  anything else, is logged and counted and its message dead-lettered too: a message that broke the code
  once will break it again, so requeueing it would only loop. A delivery is settled only after its
  handler's Deferred fired; if the connection dies first, the broker delivers it again, so a handler must
  be idempotent (reports are: the EndToEndId finds the line, and a line's state only moves forward).

:class:`BankTopology` names everything once; :class:`InProcessBankTransport` keeps the same contract in
memory (the contract tests run against both: tests/integration/test_bank_transport.py);
:class:`adapters.bank.amqp_transport.AmqpBankTransport` is the RabbitMQ one.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

log = Logger(namespace="vgw.bank_transport")

ACK = "ack"
"""A handler's verdict: the message is handled; acknowledge it."""
DEAD = "dead"
"""A handler's verdict: the message can never be handled; reject it without requeue (dead-lettered)."""
RETRY = "retry"
"""A handler's verdict: the message is fine but cannot be handled NOW (the store is down); put it back in its
queue to be delivered again. A quorum queue dead-letters it after ``delivery_limit`` deliveries, so a handler
should wait a little before answering this (it holds a prefetch slot meanwhile, which is the back-pressure)."""

WINDOW_MESSAGES = 1_000
"""Default bound on the messages in flight (published, not yet confirmed) per transport."""
WINDOW_BYTES = 64 * 1024 * 1024
"""Default bound on the bytes (bodies) in flight per transport."""
PREFETCH = 64
"""Default bound on the deliveries a consumer holds unsettled (AMQP ``basic.qos`` prefetch count)."""

Handler = Callable[[bytes, dict, "str | None"], "defer.Deferred | str"]
"""``handler(body, headers, message_id)`` returns ``'ack'`` or ``'dead'``, or a Deferred firing with one."""


# --- errors -------------------------------------------------------------------------------------------------

class TransportError(Exception):
    """Root of what a publish can fail with."""


class TransportRefused(TransportError):
    """The transport will not take this message, and publishing it again unchanged will not help: the
    broker nacked it, or returned it as unroutable (no queue bound to its routing key)."""

    def __init__(self, message_id: str, why: str) -> None:
        super().__init__(f"message {message_id!r} refused: {why}")
        self.message_id = message_id
        self.why = why


class TransportLost(TransportError):
    """The message was not confirmed because the connection went away (or was not there, or the transport is
    stopping). It may or may not have reached a queue; publish it again once :attr:`IBankTransport.ready`."""

    def __init__(self, why: str) -> None:
        super().__init__(f"transport lost: {why}")
        self.why = why


# --- topology ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BankTopology:
    """The broker objects of the bank exchange, declared (idempotently) at every connect. The defaults are what
    the gateway uses; :meth:`prefixed` gives an isolated copy (tests, a second environment on one broker)."""

    exchange: str = "vgw.bank"
    """Durable direct exchange both directions publish to."""
    transfers_queue: str = "bank.transfers"
    """Durable quorum queue of transfer orders, gateway → bank."""
    transfers_routing: str = "transfers"
    """Routing key binding ``transfers_queue`` to ``exchange``."""
    reports_queue: str = "bank.reports"
    """Durable quorum queue of status reports and booking notifications, bank → gateway."""
    reports_routing: str = "reports"
    """Routing key binding ``reports_queue`` to ``exchange``."""
    dead_letter_exchange: str = "vgw.bank.dlx"
    """Durable fanout exchange both queues dead-letter to."""
    dead_letter_queue: str = "bank.dead"
    """Durable quorum queue bound to ``dead_letter_exchange``: where an operator finds dead-lettered messages."""
    delivery_limit: int = 10
    """Deliveries after which a quorum queue dead-letters a message instead of delivering it again (a message
    that kills its consumer's process cannot loop forever), as the intake queue does."""

    def prefixed(self, prefix: str) -> BankTopology:
        """The same topology with every exchange and queue name prefixed (routing keys unchanged: they are
        scoped by the exchange)."""
        return replace(self, exchange=prefix + self.exchange, transfers_queue=prefix + self.transfers_queue,
                       reports_queue=prefix + self.reports_queue,
                       dead_letter_exchange=prefix + self.dead_letter_exchange,
                       dead_letter_queue=prefix + self.dead_letter_queue)

    @property
    def bindings(self) -> dict[str, str]:
        """Routing key → the queue it is bound to on ``exchange``."""
        return {self.transfers_routing: self.transfers_queue, self.reports_routing: self.reports_queue}

    @property
    def queues(self) -> tuple[str, ...]:
        return (self.transfers_queue, self.reports_queue, self.dead_letter_queue)

    def queue_arguments(self) -> dict:
        """Arguments of the two work queues. Quorum queues (replicated, durable); dead-lettering
        ``at-least-once`` (RabbitMQ ≥ 3.10; it needs ``x-overflow: reject-publish``), as for the intake queue."""
        return {"x-queue-type": "quorum", "x-dead-letter-exchange": self.dead_letter_exchange,
                "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
                "x-delivery-limit": self.delivery_limit}


# --- the port --------------------------------------------------------------------------------------------------

class IBankTransport(Interface):
    """Messages to and from the bank; see the module docstring for the guarantees. All methods are called
    from the reactor thread, and every Deferred fires there."""

    topology = Attribute("The :class:`BankTopology` this transport declares and publishes to.")
    ready = Attribute("True while the transport can publish and consume (connected, topology declared, "
                      "consumers consuming); False before start, while reconnecting, and once stopping.")
    stats = Attribute("The :class:`TransportStats` of this transport (counts since construction).")
    window = Attribute("The :class:`PublishWindow`: its ``count``, ``bytes`` and ``waiting`` say what is in "
                       "flight and what waits for room right now.")

    def start():
        """Connect and declare the topology. Returns a Deferred firing with None once ready, or failing with
        what prevented the first connect (then nothing retries: it is a configuration error to report)."""

    def stop():
        """Take no more publishes (waiting ones fail with TransportLost), stop consuming, wait (bounded) for
        the confirms in flight and the handlers running, then disconnect. Returns a Deferred firing with None
        once stopped; publishes still unconfirmed by then fail with TransportLost."""

    def publish(message_id, routing, body, headers):
        """Publish ``body`` (bytes) with ``message_id`` (str) and ``headers`` (dict, may be empty) to the
        topology's exchange under ``routing``, persistent and mandatory.

        Returns a Deferred that fires with None once the message is confirmed, or fails with
        :class:`TransportRefused` (nacked, or returned unroutable) or :class:`TransportLost` (the connection
        went away, or was not there, before the confirm). Over the window the Deferred first waits for room;
        it is never refused for being over it."""

    def consume(queue, handler):
        """Hand every message of ``queue`` to ``handler(body: bytes, headers: dict, message_id: str | None)``,
        which returns ``'ack'``, ``'dead'`` or ``'retry'`` (put it back: not now), or a Deferred firing with
        one; at most the prefetch count are
        unsettled at once. Returns None. Consumers are kept across reconnects. See the module docstring for
        how verdicts and failures settle a delivery."""


# --- what both implementations share -----------------------------------------------------------------------------

@dataclass
class TransportStats:
    """Counts since construction, for tests and benchmarks (metrics go to Prometheus as well, when given)."""

    published: int = 0
    """Messages handed to the broker (a republished one counts again)."""
    confirmed: int = 0
    refused: int = 0
    lost: int = 0
    """Publishes failed with TransportLost (in flight at a connection loss, or waiting, or while not ready)."""
    dead_lettered: int = 0
    """Deliveries rejected without requeue (a 'dead' verdict or a failed handler)."""
    handler_errors: int = 0
    """Handlers that raised, failed their Deferred or answered neither 'ack' nor 'dead'."""
    reconnects: int = 0
    max_in_flight: int = 0
    """The most messages ever in flight at once: > 1 shows the publishes were pipelined."""
    max_in_flight_bytes: int = 0


class BankTransportMetrics:
    """The Prometheus series of a bank transport, in the given registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter("vgw_bank_published", "Messages published to the bank exchange (a "
                                 "republished one counts again)", registry=registry)
        self.confirmed = Counter("vgw_bank_confirmed", "Published messages the broker confirmed",
                                 registry=registry)
        self.refused = Counter("vgw_bank_refused", "Published messages the broker refused, by why: nacked or "
                               "unroutable", ["why"], registry=registry)
        self.lost = Counter("vgw_bank_lost", "Publishes that failed unconfirmed because the connection went away "
                            "(the outbox publishes them again)", registry=registry)
        self.in_flight = Gauge("vgw_bank_in_flight", "Messages published and not yet confirmed",
                               registry=registry, multiprocess_mode="livesum")
        self.dead_lettered = Counter("vgw_bank_dead_lettered", "Deliveries rejected to the dead-letter exchange, "
                                     "by queue and why: rejected (the handler said so) or handler-error",
                                     ["queue", "why"], registry=registry)
        self.reconnects = Counter("vgw_bank_reconnects", "Connections re-established after a loss",
                                  registry=registry)
        self.connected = Gauge("vgw_bank_connected", "1 while the bank transport is ready, else 0",
                               registry=registry, multiprocess_mode="livemax")


class Tally:
    """Keeps :class:`TransportStats` and, if given, the Prometheus metrics in step."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.stats = TransportStats()
        self.metrics = BankTransportMetrics(registry) if registry is not None else None

    def published(self) -> None:
        self.stats.published += 1
        if self.metrics:
            self.metrics.published.inc()

    def confirmed(self) -> None:
        self.stats.confirmed += 1
        if self.metrics:
            self.metrics.confirmed.inc()

    def refused(self, why: str) -> None:
        self.stats.refused += 1
        if self.metrics:
            self.metrics.refused.labels(why).inc()

    def lost(self, count: int = 1) -> None:
        self.stats.lost += count
        if self.metrics and count:
            self.metrics.lost.inc(count)

    def dead_lettered(self, queue: str, why: str) -> None:
        self.stats.dead_lettered += 1
        if self.metrics:
            self.metrics.dead_lettered.labels(queue, why).inc()

    def handler_error(self) -> None:
        self.stats.handler_errors += 1

    def reconnected(self) -> None:
        self.stats.reconnects += 1
        if self.metrics:
            self.metrics.reconnects.inc()

    def connected(self, up: bool) -> None:
        if self.metrics:
            self.metrics.connected.set(1 if up else 0)

    def in_flight(self, count: int, size: int) -> None:
        self.stats.max_in_flight = max(self.stats.max_in_flight, count)
        self.stats.max_in_flight_bytes = max(self.stats.max_in_flight_bytes, size)
        if self.metrics:
            self.metrics.in_flight.set(count)


class PublishWindow:
    """The bound on what is in flight: at most ``messages`` messages and ``size`` bytes. A publish takes room
    at once (:meth:`try_acquire`) while there is room and no one is waiting; otherwise it waits
    (:meth:`wait`) and goes, first come first served, once :meth:`release` made room for it, so publishes go
    out in the order they were made. A message larger than ``size`` alone goes out when nothing else is in
    flight (it would otherwise wait for ever)."""

    def __init__(self, messages: int, size: int, on_change: Callable[[int, int], None]) -> None:
        if messages < 1 or size < 1:
            raise ValueError(f"a publish window needs room for one message, not {messages} messages / {size} bytes")
        self.messages = messages
        self.size = size
        self.count = 0
        self.bytes = 0
        self._waiting: collections.deque[tuple[int, Callable[[], None], Callable[[Exception], None]]] = \
            collections.deque()
        self._on_change = on_change

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _fits(self, size: int) -> bool:
        return self.count == 0 or (self.count < self.messages and self.bytes + size <= self.size)

    def try_acquire(self, size: int) -> bool:
        """Take room for ``size`` bytes now if there is (and no one waits before); whether it did."""
        if not self._waiting and self._fits(size):
            self._take(size)
            return True
        return False

    def wait(self, size: int, go: Callable[[], None], fail: Callable[[Exception], None]) -> None:
        """Queue a publish that did not get room: ``go()`` once room for ``size`` bytes was taken for it, or
        ``fail(reason)`` if :meth:`fail_waiting` comes first."""
        self._waiting.append((size, go, fail))

    def _take(self, size: int) -> None:
        self.count += 1
        self.bytes += size
        self._on_change(self.count, self.bytes)

    def release(self, size: int) -> None:
        self.count -= 1
        self.bytes -= size
        self._on_change(self.count, self.bytes)
        while self._waiting and self._fits(self._waiting[0][0]):
            size, go, _ = self._waiting.popleft()
            self._take(size)
            go()

    def fail_waiting(self, reason: Exception) -> int:
        """Fail every waiting publish with ``reason``; how many there were."""
        waiting, self._waiting = self._waiting, collections.deque()
        for _, _, fail in waiting:
            fail(reason)
        return len(waiting)


def verdict_of(outcome, queue: str, message_id: str | None) -> tuple[str, str | None]:
    """(``'ack'`` or ``'dead'``, why when dead: ``'rejected'`` or ``'handler-error'``) for what a handler's
    Deferred fired with; a failure or an unknown answer is logged here."""
    if isinstance(outcome, Failure):
        log.failure("bank message {message_id} on {queue}: the handler failed; dead-lettered", outcome,
                    LogLevel.error, event="bank.handler-failed", queue=queue, message_id=message_id)
        return DEAD, "handler-error"
    if outcome == ACK:
        return ACK, None
    if outcome == DEAD:
        return DEAD, "rejected"
    if outcome == RETRY:
        return RETRY, None
    log.error("bank message {message_id} on {queue}: the handler answered {outcome!r}, neither 'ack' nor 'dead'; "
              "dead-lettered", event="bank.handler-failed", queue=queue, message_id=message_id,
              outcome=repr(outcome))
    return DEAD, "handler-error"


# --- in process ---------------------------------------------------------------------------------------------------

@dataclass
class DeadLetter:
    """A message the in-process transport dead-lettered: from which queue, why (``'rejected'`` or
    ``'handler-error'``), and the message."""

    queue: str
    why: str
    message_id: str | None
    body: bytes
    headers: dict


@dataclass
class _Message:
    message_id: str | None
    body: bytes
    headers: dict = field(default_factory=dict)


@implementer(IBankTransport)
class InProcessBankTransport:
    """The contract in one process, for the embedded default: queues are deques, a publish is confirmed and a
    message delivered on a later reactor turn (``callLater(0)``), so callers see the same asynchrony as over a
    broker. ``dead`` lists what was dead-lettered, with why; the dead-letter queue receives it as well (with
    RabbitMQ's ``x-first-death-*`` headers), so a consumer of it sees what it would see on RabbitMQ.

    Not durable: what sits in a queue is lost with the process. It never loses its "connection", so it never
    fails a publish with TransportLost except before start and once stopping."""

    def __init__(self, topology: BankTopology = BankTopology(), *, reactor=None,
                 window_messages: int = WINDOW_MESSAGES, window_bytes: int = WINDOW_BYTES,
                 prefetch: int = PREFETCH, metrics: CollectorRegistry | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.topology = topology
        self.reactor = reactor
        self.prefetch = prefetch
        self._tally = Tally(metrics)
        self.window = PublishWindow(window_messages, window_bytes, self._tally.in_flight)
        self.queues: dict[str, collections.deque[_Message]] = {q: collections.deque() for q in topology.queues}
        self.dead: list[DeadLetter] = []
        self._consumers: dict[str, Handler] = {}
        self._unsettled: collections.Counter[str] = collections.Counter()
        self._scheduled: set[str] = set()
        self._ready = False
        self._stopping = False
        self._busy = 0  # confirms scheduled + handlers running
        self._idle: list[defer.Deferred] = []

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def stats(self) -> TransportStats:
        return self._tally.stats

    def start(self) -> defer.Deferred:
        self._ready, self._stopping = True, False
        self._tally.connected(True)
        for queue in self._consumers:
            self._schedule(queue)
        return defer.succeed(None)

    def stop(self) -> defer.Deferred:
        self._stopping = True
        self._ready = False
        self._tally.connected(False)
        self._tally.lost(self.window.fail_waiting(TransportLost("the transport is stopping")))
        if self._busy == 0:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle.append(d)
        return d

    # --- publishing ---

    def publish(self, message_id: str, routing: str, body: bytes, headers: dict | None = None) -> defer.Deferred:
        if not self._ready:
            self._tally.lost()
            return defer.fail(TransportLost("the transport is not started" if not self._stopping else
                                            "the transport is stopping"))
        done = defer.Deferred()
        size = len(body)
        send = functools.partial(self._send, _Message(message_id, bytes(body), dict(headers or {})), routing, size,
                                 done)
        if self.window.try_acquire(size):
            send()
        else:
            self.window.wait(size, send, done.errback)
        return done

    def _send(self, message: _Message, routing: str, size: int, done: defer.Deferred) -> None:
        self._tally.published()
        self._busy += 1
        self.reactor.callLater(0, self._confirm, message, routing, size, done)

    def _confirm(self, message: _Message, routing: str, size: int, done: defer.Deferred) -> None:
        self._busy -= 1
        self.window.release(size)
        queue = self.topology.bindings.get(routing)
        if queue is None:
            self._tally.refused("unroutable")
            done.errback(TransportRefused(message.message_id, f"unroutable: no queue is bound to routing key "
                                                              f"{routing!r} on {self.topology.exchange}"))
        else:
            self.queues[queue].append(message)
            self._schedule(queue)
            self._tally.confirmed()
            done.callback(None)
        self._check_idle()

    # --- consuming ---

    def consume(self, queue: str, handler: Handler) -> None:
        if queue not in self.queues:
            raise ValueError(f"{queue!r} is not a queue of {self.topology}")
        if queue in self._consumers:
            raise ValueError(f"{queue!r} already has a consumer")
        self._consumers[queue] = handler
        self._schedule(queue)

    def _schedule(self, queue: str) -> None:
        if queue not in self._scheduled and self._ready:
            self._scheduled.add(queue)
            self.reactor.callLater(0, self._deliver, queue)

    def _deliver(self, queue: str) -> None:
        self._scheduled.discard(queue)
        handler = self._consumers.get(queue)
        messages = self.queues[queue]
        while handler is not None and self._ready and messages and self._unsettled[queue] < self.prefetch:
            message = messages.popleft()
            self._unsettled[queue] += 1
            self._busy += 1
            d = defer.maybeDeferred(handler, message.body, dict(message.headers), message.message_id)
            d.addBoth(self._settle, queue, message)

    def _settle(self, outcome, queue: str, message: _Message) -> None:
        verdict, why = verdict_of(outcome, queue, message.message_id)
        if why == "handler-error":
            self._tally.handler_error()
        if verdict == RETRY:
            self.queues[queue].append(message)
        elif verdict == DEAD:
            headers = {**message.headers, "x-first-death-queue": queue, "x-first-death-reason": "rejected",
                       "x-first-death-exchange": self.topology.exchange}
            self.dead.append(DeadLetter(queue, why, message.message_id, message.body, headers))
            self._tally.dead_lettered(queue, why)
            if queue != self.topology.dead_letter_queue:
                self.queues[self.topology.dead_letter_queue].append(_Message(message.message_id, message.body,
                                                                             headers))
                self._schedule(self.topology.dead_letter_queue)
        self._unsettled[queue] -= 1
        self._busy -= 1
        self._schedule(queue)
        self._check_idle()

    def _check_idle(self) -> None:
        if self._busy == 0 and self._idle:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)


def settle_all(deferreds: Iterable[defer.Deferred]) -> defer.Deferred:
    """A Deferred firing with [(True, None) | (False, Failure)] once every one of ``deferreds`` has fired,
    consuming their failures (for callers that publish a batch and then look at each outcome)."""
    return defer.DeferredList(list(deferreds), consumeErrors=True)
