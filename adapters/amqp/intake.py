"""The voucher intake over AMQP 0-9-1 (RabbitMQ): the same use cases as ``POST /v1/vouchers`` and
``POST /v1/vouchers/{id}/actions``, by message.

An agency's system publishes the signed voucher (routing key ``voucher.submit``) or a signed action
(``action.submit``) to the exchange ``vgw.vouchers`` with ``reply_to`` and ``correlation_id``; both keys bind
the one queue, and the consumer dispatches by the delivery's routing key. The gateway answers to
``reply_to`` with the same ``correlation_id`` and exactly the body HTTPS would send (the signed receipt, or
a problem document). A message that reached the queue by another key (the default exchange routes by queue
name) is answered ``bad-request`` and acknowledged. docs/api.md "AMQP intake" is the contract.

Who is calling. There is no TLS client certificate on this path. RabbitMQ refuses (closes the channel on)
a message whose ``user_id`` property differs from the user the connection authenticated as, unless that
user has the ``impersonator`` tag, which agency users must never get. So ``user_id`` is authenticated by the
broker, and an operator's mapping (broker user → agency code) names the agency. A message without a
``user_id``, or from a user not in the mapping, is refused with ``agency-unknown``; the agency must also be
known to the role registry (checked by the service).

Guarantees, as over HTTPS:
- The request is acknowledged only after the service returned, i.e. after the store committed (a receipt
  is only produced after the commit), AND the reply was published with a publisher confirm. A crash
  anywhere before the ack leaves the request in the queue; redelivered, the same bytes are answered 200
  with the ORIGINAL receipt (intake and actions are both idempotent), so an agency may see a receipt
  twice, never lose one.
- A reply that cannot be routed (``reply_to`` names no queue: the broker returns it, ``mandatory``) or that
  the broker nacks does not hold the request back: the voucher's fate is already durable in the store and
  the agency can ask for it (``GET /v1/vouchers/{id}``) or simply publish the same bytes again. Logged.
- A message that can never be answered (no ``reply_to``) is rejected without requeue and dead-lettered to
  ``vgw.intake.dead`` for an operator. So is a request the gateway failed on (a bug, or the store down):
  the agency gets an ``internal-error`` problem saying it is safe to send again, and the operator keeps the
  message. The queue also dead-letters a message after ``delivery_limit`` deliveries (a message that kills
  the consumer cannot loop forever). Quorum-queue dead-lettering is ``at-least-once`` (RabbitMQ ≥ 3.10).

Threads. pika's ``BlockingConnection`` in one thread of its own: it owns the connection (pika connections
are not thread-safe; :meth:`AmqpIntake.stop` only sets an event and wakes the loop with pika's one
thread-safe call) and handles one message at a time, which keeps the ack-after-commit-and-confirm order
trivially right. The work per message blocks (verification, the store), exactly as the HTTPS handlers do
in Twisted's thread pool. For more throughput start several :class:`AmqpIntake` on the same queue (each
is one connection and one consumer); the broker spreads messages across them. pika's Twisted adapter
would put the consumer on the reactor, but every message would still need a worker thread and a hop back
to the reactor for each ack; that is for when the gateway needs it, not before.

The broker going away (restart, failover, a dropped TCP connection). The consumer thread notices (pika
raises out of ``process_data_events``, or out of the reply's publish in the middle of a message), closes
what is left and reconnects after the waits of :class:`~adapters.amqp.thread.Backoff`, declaring the topology again and
consuming again; one structured log line per attempt (``event=amqp.reconnect``). Nothing is lost or stored
twice meanwhile: every delivery not yet acknowledged goes back to the queue when the connection dies and
is delivered again (``redelivered`` in its log line), and a voucher already stored before the drop is
answered again with its original receipt. A reply whose publish failed because the connection dropped
is never followed by an ack: the request comes back and is answered then. ``connected`` (and the metric
``vgw_amqp_connected``, and ``GET /readyz``) say whether the consumer is consuming right now.

Queue depth. Every ``probe_interval`` seconds (and at each connect) the consumer asks the broker how many
messages wait in its queue (a passive ``queue.declare``: the messages ready, not those delivered and not
yet acknowledged) and sets ``vgw_amqp_queue_messages``. It asks on its own connection, in its own thread,
between deliveries, because a ``BlockingConnection`` is not thread-safe and a second connection just for
this would be one more thing to reconnect. The price: while one message takes long, the number is as
old as that message's handling.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pika
import pika.exceptions
from prometheus_client import CollectorRegistry
from twisted.logger import Logger

from adapters.amqp.thread import AmqpThread, Backoff, Session
from adapters.http.metrics import AmqpMetrics
from adapters.http.site import DEFAULT_MAX_BODY, Answer, internal_error
from gateway.errors import Refusal

log = Logger(namespace="vgw.amqp_intake")


@dataclass(frozen=True)
class AmqpTopology:
    """Names and limits of what the intake declares on the broker (idempotently, at every connect)."""

    exchange: str = "vgw.vouchers"
    """Durable direct exchange agencies publish to."""
    routing_key: str = "voucher.submit"
    """The routing key binding ``queue`` to ``exchange`` for vouchers."""
    action_routing_key: str = "action.submit"
    """The routing key binding ``queue`` to ``exchange`` for signed actions."""
    queue: str = "vgw.intake"
    """Durable quorum queue the gateway consumes."""
    dead_letter: str = "vgw.intake.dead"
    """Name of both the dead-letter exchange (fanout) and its durable quorum queue."""
    delivery_limit: int = 10
    """Deliveries after which the broker dead-letters a message instead of delivering it again."""

    def queue_arguments(self) -> dict:
        return {"x-queue-type": "quorum", "x-dead-letter-exchange": self.dead_letter,
                "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
                "x-delivery-limit": self.delivery_limit}


def declare_topology(channel, topology: AmqpTopology) -> None:
    """Declare exchange, queue, binding and dead-lettering. Idempotent; a queue that exists with other
    arguments makes the broker close the channel (406 PRECONDITION_FAILED), which is then the error."""
    channel.exchange_declare(topology.dead_letter, "fanout", durable=True)
    channel.queue_declare(topology.dead_letter, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(topology.dead_letter, topology.dead_letter)
    channel.exchange_declare(topology.exchange, "direct", durable=True)
    channel.queue_declare(topology.queue, durable=True, arguments=topology.queue_arguments())
    channel.queue_bind(topology.queue, topology.exchange, routing_key=topology.routing_key)
    channel.queue_bind(topology.queue, topology.exchange, routing_key=topology.action_routing_key)


QUEUE_PROBE_SECONDS = 5.0
"""How often the consumer asks the broker for its queue's depth (``vgw_amqp_queue_messages``)."""


class AmqpIntake(AmqpThread):
    """Consumes ``topology.queue`` and answers every voucher through ``service.submit_voucher_as`` and every
    action through ``actions.submit_action_as``.

    ``service`` is anything with ``submit_voucher_as(agency: str, body: bytes) -> Answer`` raising
    :class:`Refusal` (:class:`adapters.services.intake.IntakeService`); ``actions`` likewise with
    ``submit_action_as`` (:class:`adapters.services.actions.ActionService`), or None to take no actions here
    (an action is then answered ``bad-request``).
    ``agencies`` maps broker user names to agency codes. ``start()`` returns once consuming (or raises
    what prevented it); ``stop()`` stops consuming, lets the message in hand finish, and closes.
    ``registry`` is where the gauges go (the one ``/metrics`` serves); one intake per registry.
    """

    def __init__(self, service, parameters: pika.connection.Parameters, *, agencies: Mapping[str, str],
                 actions=None, topology: AmqpTopology = AmqpTopology(), prefetch: int = 8,
                 max_body: int = DEFAULT_MAX_BODY, registry: CollectorRegistry | None = None,
                 backoff: Backoff = Backoff(), probe_interval: float = QUEUE_PROBE_SECONDS) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1 (0 would mean unbounded)")
        super().__init__(parameters, backoff)
        self.service = service
        self.actions = actions
        self.agencies = dict(agencies)
        self.topology = topology
        self.prefetch = prefetch
        self.max_body = max_body
        self.probe_interval = probe_interval
        self.metrics = AmqpMetrics(registry if registry is not None else CollectorRegistry(), topology.queue)

    what = "AMQP intake"
    prefix = "amqp"

    def _log_fields(self) -> dict:
        return {"queue": self.topology.queue}

    def _open(self, connection: pika.BlockingConnection) -> Session:
        channel = connection.channel()
        declare_topology(channel, self.topology)
        channel.basic_qos(prefetch_count=self.prefetch)
        replies = connection.channel()
        replies.confirm_delivery()
        self._probe(channel)  # before consuming: what waited while we were away
        self._replies = replies  # used only by this thread's callbacks
        channel.basic_consume(self.topology.queue, self._on_message, auto_ack=False)
        return Session(connection, channel)

    def _on_connected(self) -> None:
        self.metrics.connected.set(1)

    def _on_disconnected(self) -> None:
        self.metrics.connected.set(0)
        self.metrics.forget_depth()  # unknown until the next connect

    def _serve(self, session: Session) -> None:
        """Handle deliveries until stop(); ask for the queue depth every ``probe_interval`` seconds."""
        next_probe = time.monotonic() + self.probe_interval
        while not self._stopping.is_set():
            session.connection.process_data_events(time_limit=max(0.0, min(1.0, next_probe - time.monotonic())))
            if time.monotonic() >= next_probe:
                self._probe(session.channel)
                next_probe = time.monotonic() + self.probe_interval
        # Cancelling nacks (requeues) deliveries received but not yet handed to the callback.
        session.channel.stop_consuming()

    def _probe(self, channel) -> None:
        """The queue's ready messages, by a passive declare on this thread's own channel."""
        depth = channel.queue_declare(self.topology.queue, passive=True).method.message_count
        self.metrics.set_depth(depth)

    # --- one message ------------------------------------------------------------------------------------

    def _on_message(self, channel, method, properties, body: bytes) -> None:
        tag = method.delivery_tag
        if self._stopping.is_set():
            return  # sent ahead before stop(): left unacknowledged, the broker requeues it when we close
        started = time.monotonic()
        reply_to, correlation_id, user = properties.reply_to, properties.correlation_id, properties.user_id
        agency = self.agencies.get(user) if user else None
        line = {"user": user, "agency": agency, "correlation_id": correlation_id, "redelivered": method.redelivered,
                "routing_key": method.routing_key, "started": started}
        if not reply_to:
            channel.basic_nack(tag, requeue=False)
            self._log(status=None, voucher_id=None, outcome="dead-lettered-no-reply-to", **line)
            return
        failed = False
        try:
            answer, outcome = self._answer(method.routing_key, user, agency, body)
        except Exception:
            log.failure("AMQP intake: internal error on a message from user {user} (correlation_id {cid}); "
                        "dead-lettered", user=user, cid=correlation_id)
            answer, outcome = internal_error(), "internal-error"
            failed = True
        try:
            if not self._reply(reply_to, correlation_id, answer, user):
                outcome += "+reply-lost"
        except BaseException:
            # The connection went away under the publish: no ack follows, the broker delivers the request
            # again after the reconnect, and it is answered then (from the store, if it was stored now).
            self._log(status=answer.status, voucher_id=answer.voucher_id, outcome=f"{outcome}+reply-failed", **line)
            raise
        if failed:
            channel.basic_nack(tag, requeue=False)
        else:
            channel.basic_ack(tag)
        self._log(status=answer.status, voucher_id=answer.voucher_id, outcome=outcome, **line)

    def _answer(self, routing_key: str, user: str | None, agency: str | None, body: bytes) -> tuple[Answer, str]:
        try:
            submit = self._use_case(routing_key)
            if len(body) > self.max_body:
                raise Refusal("too-large", f"the body is larger than {self.max_body} bytes")
            if agency is None:
                raise Refusal("agency-unknown", "the message carries no user_id" if not user else
                              f"the broker user {user!r} is not mapped to an agency")
            answer = submit(agency, body)
            return answer, answer.outcome or "ok"
        except Refusal as refusal:
            return Answer.problem(refusal), refusal.code

    def _use_case(self, routing_key: str) -> Callable[[str, bytes], Answer]:
        """What a delivery asks for, by the routing key it was published with; a key that names nothing
        here (it reached the queue through the default exchange, or an operator's extra binding) is a
        ``bad-request``, answered and acknowledged: sending it again would not make it better."""
        if routing_key == self.topology.routing_key:
            return self.service.submit_voucher_as
        if routing_key == self.topology.action_routing_key and self.actions is not None:
            return self.actions.submit_action_as
        known = self.topology.routing_key if self.actions is None else \
            f"{self.topology.routing_key} or {self.topology.action_routing_key}"
        raise Refusal("bad-request", f"the routing key {routing_key!r} asks for nothing this gateway does here "
                      f"(publish to {self.topology.exchange} with {known})")

    @staticmethod
    def _log(*, user, agency, correlation_id, status, voucher_id, outcome, redelivered, routing_key, started) -> None:
        """One structured line per message, like ``http.request`` for HTTPS (no bodies, no certificates);
        ``redelivered``: the broker had handed this message out before and got no ack (a reconnect, a stop);
        ``routing_key``: what was asked for (``voucher.submit``, ``action.submit``)."""
        log.info("amqp {user} {status} {outcome} {latency_ms}ms", event="amqp.message", user=user, agency=agency,
                 correlation_id=correlation_id, status=status, voucher_id=voucher_id, outcome=outcome,
                 redelivered=redelivered, routing_key=routing_key,
                 latency_ms=round((time.monotonic() - started) * 1000, 3))

    def _reply(self, reply_to: str, correlation_id: str | None, answer: Answer, user: str | None) -> bool:
        """Publish the answer with a confirm; False if it was unroutable or nacked (logged, not retried: see
        the module docstring). A lost connection raises, leaving the request unacknowledged."""
        headers = {"status": answer.status, **answer.headers}
        properties = pika.BasicProperties(content_type=answer.content_type, correlation_id=correlation_id,
                                          headers=headers, delivery_mode=pika.DeliveryMode.Persistent,
                                          app_id="vgw")
        try:
            self._replies.basic_publish("", reply_to, answer.body, properties, mandatory=True)
            return True
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            why = "was unroutable" if isinstance(exc, pika.exceptions.UnroutableError) else "was refused by the broker"
            log.warn("AMQP intake: reply {status} to {reply_to} for user {user} (correlation_id {cid}) {why}; the "
                     "request is acknowledged, its outcome is in the store",
                     status=answer.status, reply_to=reply_to, user=user, cid=correlation_id, why=why)
            return False
