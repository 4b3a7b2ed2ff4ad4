"""The bank transport over RabbitMQ, on the reactor: pika's Twisted adapter, pipelined publisher confirms.

Why not the ``BlockingConnection`` thread the intake and the event publisher use (:mod:`adapters.amqp.thread`):
there a publish waits for its own confirm before the next goes out, which caps a connection at one round
trip (and one quorum-queue commit) per message, ~1.4k messages/s on this machine. Here every publish goes
out at once and gets a Deferred of its own; the broker's confirms (single or ``multiple``) fire them as
they come. The window (:class:`~adapters.bank.transport.PublishWindow`, count AND bytes) bounds what the
broker and the socket buffer hold for us; a publish over it waits for room.

One connection, two channels: one in confirm mode for publishing (so a flow-controlled publish channel
never holds up the consumer's acks), one with ``basic.qos(prefetch)`` for consuming.

Per publish (exchange ``topology.exchange``, persistent, ``mandatory``, ``message_id`` set):
- ``basic.ack`` → the Deferred fires with None;
- ``basic.nack`` → :class:`TransportRefused` (``why`` starts with "nacked");
- ``basic.return`` then ``basic.ack`` (no queue bound to the routing key) → :class:`TransportRefused`
  (``why`` starts with "unroutable"). RabbitMQ sends a message's return before its ack, but the return
  does not carry the delivery tag (pika's TwistedChannel pins it on whichever tag is confirmed next, which
  with many messages in flight may be another message's). So this adapter keeps its own bookkeeping
  (:meth:`AmqpBankTransport._select_confirms`) and matches returns by ``message_id``: a return is noted
  under its message_id, and the next confirm of a message with that id consumes the note (an outbox never
  has two messages with one id in flight on one connection; if it had, both would be routed alike).
- the connection or a channel going away → :class:`TransportLost`, for every message in flight and every
  one waiting for the window.

Reconnect. A lost connection (broker restart, TCP drop, a channel closed by the broker) makes ``ready``
False, fails what was in flight, and schedules connect attempts by :class:`~adapters.amqp.thread.Backoff`
(one structured line per attempt, ``event=bank.reconnect``, as the AMQP threads log). A new connection
declares the topology again and re-establishes every consumer before ``ready`` turns True. Publishes while
not ready fail at once with TransportLost: the relay holds its rows and tries again later.

Deliveries not yet settled when the connection died are delivered again by the broker (their late verdict
is dropped: a delivery tag belongs to its channel), hence idempotent handlers.
"""

from __future__ import annotations

import collections
import functools
from dataclasses import dataclass, field

import pika
import pika.exceptions
from pika.adapters.twisted_connection import TwistedChannel, TwistedProtocolConnection
from prometheus_client import CollectorRegistry
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.logger import Logger
from zope.interface import implementer

from adapters.amqp.thread import Backoff
from adapters.bank.transport import (
    ACK,
    DEAD,
    PREFETCH,
    RETRY,
    WINDOW_BYTES,
    WINDOW_MESSAGES,
    BankTopology,
    Handler,
    IBankTransport,
    PublishWindow,
    Tally,
    TransportLost,
    TransportRefused,
    TransportStats,
    verdict_of,
)

log = Logger(namespace="vgw.bank_amqp")

CONNECT_TIMEOUT = 15.0
"""Seconds a connect attempt (TCP, AMQP handshake, declarations, consumers) may take before it is abandoned."""
STOP_TIMEOUT = 10.0
"""Seconds :meth:`AmqpBankTransport.stop` waits for confirms in flight and running handlers before closing."""


@defer.inlineCallbacks
def declare_topology(channel: TwistedChannel, topology: BankTopology):
    """Declare the dead-letter exchange and queue, the exchange, and both work queues with their bindings.
    Idempotent; a queue that exists with other arguments makes the broker close the channel (406
    PRECONDITION_FAILED), which is then the error."""
    yield channel.exchange_declare(topology.dead_letter_exchange, "fanout", durable=True)
    yield channel.queue_declare(topology.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"})
    yield channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange)
    yield channel.exchange_declare(topology.exchange, "direct", durable=True)
    for routing, queue in topology.bindings.items():
        yield channel.queue_declare(queue, durable=True, arguments=topology.queue_arguments())
        yield channel.queue_bind(queue, topology.exchange, routing_key=routing)


@dataclass(eq=False)
class _Pending:
    message_id: str
    size: int
    done: defer.Deferred


@dataclass(eq=False)
class _Session:
    """One connection and its two channels; replaced whole on reconnect."""

    connection: TwistedProtocolConnection
    publishing: TwistedChannel
    consuming: TwistedChannel
    pending: dict[int, _Pending] = field(default_factory=dict)
    """Publishes on the publishing channel not yet confirmed, by delivery tag."""
    last_tag: int = 0
    """The delivery tag of the last publish: the broker numbers a confirm-mode channel's publishes 1, 2, ..."""
    oldest: int = 1
    """No tag below this one is still pending (so a ``multiple`` confirm walks each tag once)."""
    returned: dict[str, collections.deque[str]] = field(default_factory=dict)
    """message_id → why of each basic.return not yet matched with its confirm."""
    consumer_tags: list[str] = field(default_factory=list)
    closed: bool = False

    @property
    def raw_publishing(self) -> pika.channel.Channel:
        return self.publishing._channel  # see _select_confirms


def _when_fired(d: defer.Deferred) -> defer.Deferred:
    """A new Deferred firing with None once ``d`` fired (either way), leaving ``d``'s own result alone."""
    fired = defer.Deferred()
    d.addBoth(lambda result: (fired.callback(None), result)[1])
    return fired


@implementer(IBankTransport)
class AmqpBankTransport:
    """:class:`~adapters.bank.transport.IBankTransport` on RabbitMQ; see the module docstring.

    ``parameters``: the broker (host, port, credentials, vhost, heartbeat; TLS is not supported yet and is
    refused). ``backoff``: the waits between reconnect attempts. ``window_messages`` / ``window_bytes``: the
    bound on what is in flight. ``prefetch``: deliveries a consumer may hold unsettled. ``metrics``: a
    CollectorRegistry for the ``vgw_bank_*`` series, or None.
    """

    def __init__(self, parameters: pika.connection.Parameters, topology: BankTopology = BankTopology(), *,
                 reactor=None, backoff: Backoff = Backoff(), window_messages: int = WINDOW_MESSAGES,
                 window_bytes: int = WINDOW_BYTES, prefetch: int = PREFETCH,
                 metrics: CollectorRegistry | None = None, connect_timeout: float = CONNECT_TIMEOUT,
                 stop_timeout: float = STOP_TIMEOUT) -> None:
        if parameters.ssl_options is not None:
            raise ValueError("AmqpBankTransport does not support amqps:// yet (pika's SSLOptions are not handed to "
                             "Twisted's TLS)")
        if reactor is None:
            from twisted.internet import reactor
        self.parameters = parameters
        self.topology = topology
        self.reactor = reactor
        self.backoff = backoff
        self.prefetch = prefetch
        self.connect_timeout = connect_timeout
        self.stop_timeout = stop_timeout
        self._tally = Tally(metrics)
        self.window = PublishWindow(window_messages, window_bytes, self._tally.in_flight)
        self._consumers: dict[str, Handler] = {}
        self._session: _Session | None = None
        self._started = False
        self._stopping = False
        self._stopped: defer.Deferred | None = None  # while stopping: fires once stopped
        self._connecting: defer.Deferred | None = None
        self._retry = None  # the DelayedCall of the next reconnect attempt
        self._delays = None
        self._attempt = 0
        self._handling = 0
        self._idle: list[defer.Deferred] = []

    # --- state ---

    @property
    def ready(self) -> bool:
        return self._session is not None and not self._stopping

    @property
    def stats(self) -> TransportStats:
        return self._tally.stats

    def _log_fields(self) -> dict:
        return {"exchange": self.topology.exchange, "broker": f"{self.parameters.host}:{self.parameters.port}"}

    # --- life cycle ---

    def start(self) -> defer.Deferred:
        if self._started:
            raise RuntimeError("this AmqpBankTransport was already started")
        self._started, self._stopping, self._stopped = True, False, None

        def failed(failure):
            self._started = False
            return failure

        d = self._connect()
        d.addCallbacks(lambda _: log.info("bank transport connected", event="bank.connect", **self._log_fields()),
                       failed)
        return d

    def stop(self) -> defer.Deferred:
        if self._stopped is None:  # not already stopping
            self._stopping = True
            if self._retry is not None and self._retry.active():
                self._retry.cancel()
            self._retry = None
            self._tally.connected(False)
            self._tally.lost(self.window.fail_waiting(TransportLost("the transport is stopping")))
            self._stopped = self._stop()
        return _when_fired(self._stopped)

    @defer.inlineCallbacks
    def _stop(self):
        if self._connecting is not None:  # a connect attempt in hand: let it end (bounded by connect_timeout)
            yield _when_fired(self._connecting)
        session = self._session
        if session is not None:
            cancels = [session.consuming.basic_cancel(tag) for tag in session.consumer_tags]
            cancelled = defer.DeferredList(cancels, consumeErrors=True)  # a closed channel delivers nothing more
            cancelled.addTimeout(self.stop_timeout, self.reactor)
            try:
                yield cancelled
            except defer.TimeoutError:
                pass  # the close below settles it
            if session.pending or self._handling:
                idle = defer.Deferred()
                self._idle.append(idle)
                idle.addTimeout(self.stop_timeout, self.reactor)
                try:
                    yield idle
                except defer.TimeoutError:
                    log.warn("bank transport stopping with {count} publishes unconfirmed and {handling} handlers "
                             "running after {timeout} s", event="bank.stop-timeout", count=len(session.pending),
                             handling=self._handling, timeout=self.stop_timeout, **self._log_fields())
            yield self._close(session)
        self._started = False

    def _close(self, session: _Session) -> defer.Deferred:
        """Close the connection (and fail what it still had in flight); fires once closed, aborting the TCP
        connection if the broker does not answer the close within ``stop_timeout``."""
        connection = session.connection
        closed = connection.closed
        if session.closed or closed is None:
            return defer.succeed(None)
        waiter = defer.Deferred()
        closed.addBoth(lambda result: (waiter.callback(None) if not waiter.called else None, result)[1])
        try:
            connection.close()
        except pika.exceptions.AMQPError:
            pass

        def abort():
            if not waiter.called and connection.transport is not None:
                connection.transport.abortConnection()
        call = self.reactor.callLater(self.stop_timeout, abort)
        waiter.addBoth(lambda r: (call.cancel() if call.active() else None, r)[1])
        return waiter

    def _check_idle(self) -> None:
        session = self._session
        if self._idle and self._handling == 0 and (session is None or not session.pending):
            idle, self._idle = self._idle, []
            for d in idle:
                if not d.called:
                    d.callback(None)

    # --- connecting ---

    def _connect(self) -> defer.Deferred:
        """One connect attempt; fires with None once ready, or fails with why."""
        self._connecting = d = self._open()

        def done(result):
            self._connecting = None
            return result
        return d.addBoth(done)

    @defer.inlineCallbacks
    def _open(self):
        p = self.parameters
        endpoint = HostnameEndpoint(self.reactor, p.host, p.port, timeout=self.connect_timeout)
        connection = yield connectProtocol(endpoint, TwistedProtocolConnection(p, custom_reactor=self.reactor))
        watchdog = self.reactor.callLater(self.connect_timeout, connection.transport.abortConnection)
        try:
            yield connection.ready
            publishing = yield connection.channel()
            yield declare_topology(publishing, self.topology)
            consuming = yield connection.channel()
            yield consuming.basic_qos(prefetch_count=self.prefetch)
            session = _Session(connection, publishing, consuming)
            yield self._select_confirms(session)
            for queue, handler in self._consumers.items():
                yield self._start_consumer(session, queue, handler)
        except BaseException:
            if connection.transport is not None:
                connection.transport.abortConnection()
            raise
        finally:
            if watchdog.active():
                watchdog.cancel()
        connection.closed.addCallback(self._lost, session)
        publishing.on_closed.addCallback(self._channel_closed, session, "publishing")
        consuming.on_closed.addCallback(self._channel_closed, session, "consuming")
        if self._stopping:  # stop() was called during the attempt: do not come up
            yield self._close(session)
            raise TransportLost("the transport is stopping")
        self._session = session
        self._tally.connected(True)

    def _select_confirms(self, session: _Session) -> defer.Deferred:
        """Put the publishing channel in confirm mode, with this adapter's own bookkeeping of confirms and
        returns. It works on the pika ``Channel`` under the TwistedChannel (``TwistedChannel._channel``, the
        one private name used here) because TwistedChannel's confirm mode costs a Deferred per publish,
        walks every pending delivery on each ``multiple`` confirm, and pins a basic.return on whichever tag
        is confirmed next, which with many messages in flight may be another message's. Fires once the
        broker answered Confirm.SelectOk; fails if the channel closes first."""
        raw = session.raw_publishing
        selected = defer.Deferred()

        def closed(_channel, reason):
            if not selected.called:
                selected.errback(TransportLost(f"the publishing channel closed ({reason!r})"))

        raw.add_on_close_callback(closed)
        raw.add_on_return_callback(lambda _channel, method, properties, _body: self._returned(session, method,
                                                                                               properties))
        raw.confirm_delivery(ack_nack_callback=lambda frame: self._confirmed(session, frame.method),
                             callback=lambda _frame: None if selected.called else selected.callback(None))
        return selected

    def _channel_closed(self, reason, session: _Session, which: str):
        """A channel the broker closed (e.g. 404 on a queue deleted under a consumer) leaves the session half
        working: close the connection, which reconnects."""
        if not session.closed and not self._stopping and session.connection.is_open:
            log.warn("bank transport: the broker closed the {which} channel ({error}); reconnecting",
                     event="bank.channel-closed", which=which, error=repr(reason), **self._log_fields())
            self._close(session)
        return None

    def _lost(self, reason, session: _Session):
        """The connection of ``session`` is closed (by us or not): fail what it had in flight; if it was the
        current one and we are not stopping, reconnect."""
        session.closed = True
        current = session is self._session
        lost = TransportLost(f"the connection closed before the confirm ({reason!r})")
        if current:
            self._session = None
            self._tally.connected(False)
            self._tally.lost(self.window.fail_waiting(lost))
        pending, session.pending = session.pending, {}
        for entry in pending.values():
            self.window.release(entry.size)
            entry.done.errback(lost)
        self._tally.lost(len(pending))
        self._check_idle()
        if current and not self._stopping:
            log.warn("bank transport lost its connection ({error}); {count} publishes in flight failed; reconnecting",
                     event="bank.disconnected", error=repr(reason), count=len(pending), **self._log_fields())
            self._attempt = 0
            self._delays = self.backoff.delays()
            self._schedule_reconnect()
        return None

    def _schedule_reconnect(self) -> None:
        wait = next(self._delays)
        self._attempt += 1
        self._retry = self.reactor.callLater(wait, self._reconnect, self._attempt, wait)

    def _reconnect(self, attempt: int, wait: float) -> None:
        self._retry = None
        if self._stopping:
            return
        fields = {"event": "bank.reconnect", "attempt": attempt, "waited_s": round(wait, 3), **self._log_fields()}

        def connected(_):
            self._tally.reconnected()
            log.info("bank transport reconnect attempt {attempt} connected", outcome="connected", **fields)

        def failed(failure):
            log.warn("bank transport reconnect attempt {attempt} failed ({error})", outcome="failed",
                     error=repr(failure.value), **fields)
            if not self._stopping:
                self._schedule_reconnect()

        self._connect().addCallbacks(connected, failed)

    # --- publishing ---

    def publish(self, message_id: str, routing: str, body: bytes, headers: dict | None = None) -> defer.Deferred:
        if not self.ready:
            self._tally.lost()
            return defer.fail(TransportLost("the transport is stopping" if self._stopping else "not connected"))
        done = defer.Deferred()
        size = len(body)
        if self.window.try_acquire(size):
            self._send(message_id, routing, body, headers, size, done)
        else:
            self.window.wait(size, functools.partial(self._send, message_id, routing, body, headers, size, done),
                             done.errback)
        return done

    def _send(self, message_id: str, routing: str, body: bytes, headers: dict | None, size: int,
              done: defer.Deferred) -> None:
        session = self._session
        if session is None or session.closed:  # lost while this publish waited for the window
            self.window.release(size)
            self._tally.lost()
            done.errback(TransportLost("not connected"))
            return
        properties = pika.BasicProperties(message_id=message_id, headers=headers or None, app_id="vgw",
                                          delivery_mode=pika.DeliveryMode.Persistent)
        try:
            session.raw_publishing.basic_publish(self.topology.exchange, routing, body, properties, mandatory=True)
        except (pika.exceptions.AMQPError, OSError) as exc:  # closing under our feet: the close is on its way
            self.window.release(size)
            self._tally.lost()
            done.errback(TransportLost(repr(exc)))
            return
        session.last_tag += 1
        session.pending[session.last_tag] = _Pending(message_id, size, done)
        self._tally.published()

    def _returned(self, session: _Session, method: pika.spec.Basic.Return,
                  properties: pika.spec.BasicProperties) -> None:
        why = f"unroutable: {method.reply_code} {method.reply_text} (exchange {method.exchange!r}, routing key " \
              f"{method.routing_key!r})"
        session.returned.setdefault(properties.message_id, collections.deque()).append(why)

    def _confirmed(self, session: _Session, method: pika.spec.Basic.Ack | pika.spec.Basic.Nack) -> None:
        """A basic.ack or basic.nack of one delivery tag, or (``multiple``) of every tag up to it."""
        nacked = isinstance(method, pika.spec.Basic.Nack)
        tag = method.delivery_tag
        if method.multiple:
            tags = range(session.oldest, tag + 1)
            session.oldest = max(session.oldest, tag + 1)
        else:
            tags = (tag,)
            if tag == session.oldest:
                session.oldest += 1
        for tag in tags:
            entry = session.pending.pop(tag, None)
            if entry is not None:
                self._settle_publish(session, entry, nacked)
        self._check_idle()

    def _settle_publish(self, session: _Session, entry: _Pending, nacked: bool) -> None:
        self.window.release(entry.size)
        returns = session.returned.get(entry.message_id)
        returned = None
        if returns:
            returned = returns.popleft()
            if not returns:
                del session.returned[entry.message_id]
        if nacked:
            self._tally.refused("nacked")
            entry.done.errback(TransportRefused(entry.message_id, "nacked by the broker"))
        elif returned is not None:
            self._tally.refused("unroutable")
            entry.done.errback(TransportRefused(entry.message_id, returned))
        else:
            self._tally.confirmed()
            entry.done.callback(None)

    # --- consuming ---

    def consume(self, queue: str, handler: Handler) -> None:
        if queue in self._consumers:
            raise ValueError(f"{queue!r} already has a consumer")
        self._consumers[queue] = handler
        session = self._session
        if session is not None:
            self._start_consumer(session, queue, handler).addErrback(
                lambda failure: log.failure("bank transport could not consume {queue}", failure,
                                            event="bank.consume-failed", queue=queue, **self._log_fields()))

    @defer.inlineCallbacks
    def _start_consumer(self, session: _Session, queue: str, handler: Handler):
        messages, tag = yield session.consuming.basic_consume(queue, auto_ack=False)
        session.consumer_tags.append(tag)
        self._consume_loop(session, queue, handler, messages)

    @defer.inlineCallbacks
    def _consume_loop(self, session: _Session, queue: str, handler: Handler, messages):
        while True:
            try:
                message = yield messages.get()
            except Exception as exc:  # the channel closed, or the consumer was cancelled
                if not session.closed and not self._stopping and session.connection.is_open:
                    log.warn("bank transport: the consumer of {queue} ended ({error}); reconnecting",
                             event="bank.consumer-ended", queue=queue, error=repr(exc), **self._log_fields())
                    self._close(session)
                return
            self._handling += 1
            properties = message.properties
            d = defer.maybeDeferred(handler, message.body, dict(properties.headers or {}), properties.message_id)
            d.addBoth(self._settle, session, queue, message)

    def _settle(self, outcome, session: _Session, queue: str, message) -> None:
        self._handling -= 1
        message_id = message.properties.message_id
        verdict, why = verdict_of(outcome, queue, message_id)
        if why == "handler-error":
            self._tally.handler_error()
        channel = message.channel
        if session.closed or not channel.is_open:
            log.info("bank message {message_id} on {queue} settled ({verdict}) after its channel closed; the broker "
                     "delivers it again", event="bank.settled-late", message_id=message_id, queue=queue,
                     verdict=verdict)
        else:
            try:
                if verdict == ACK:
                    channel.basic_ack(message.method.delivery_tag)
                elif verdict == RETRY:
                    channel.basic_nack(message.method.delivery_tag, requeue=True)
                else:
                    assert verdict == DEAD
                    channel.basic_reject(message.method.delivery_tag, requeue=False)
                    self._tally.dead_lettered(queue, why)
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.info("bank message {message_id} on {queue}: {verdict} failed ({error}); the broker delivers it "
                         "again", event="bank.settled-late", message_id=message_id, queue=queue, verdict=verdict,
                         error=repr(exc))
        self._check_idle()
        return None
