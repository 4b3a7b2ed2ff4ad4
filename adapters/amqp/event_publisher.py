"""Queue events over AMQP: the audit log as the outbox, published to the topic exchange ``vgw.events``.

Every workflow status change is an audit entry written in the same transaction as the change, so the log
already is a transactional outbox: nothing has to be written twice, and no change can happen without its
entry. The publisher reads the entries after its cursor (table ``event_cursor``, row ``vgw.events``), turns
each into an event (:func:`gateway.workflow.queue_events.event_of`: the queue a revision entered, or a status an
agency waits for; most entries publish nothing), publishes them, and advances the cursor.

At-least-once, in this order: publish every event of a batch with a publisher confirm, THEN move the cursor
by a compare-and-set to the batch's last seq. A crash, a lost connection or a store failure between the two
leaves the cursor where it was, and the batch is published again: a consumer may see an event twice, never
miss one. Every event's ``message_id`` is its audit seq (also ``event_id`` in the body), unique and
increasing, which is what consumers deduplicate by. An event whose routing key no queue is bound to is
dropped by the broker (a topic exchange, not ``mandatory``): an agency that wants events binds a durable
queue before they happen.

Several publishers. ``vgw serve --workers N`` starts one, in worker 1 (the supervisor stops every worker
when one dies, so worker 1 lives as long as the gateway serves). Gateways on several hosts sharing one
PostgreSQL each run one; that is safe, not efficient: the compare-and-set lets exactly one of them advance
from a given position, the others find the cursor moved, read it again and go on from there. What they had
published meanwhile is a duplicate (same message_id), and a consumer may receive an older id after a newer
one; deduplicating by message_id covers both.

Threads. Like the intake (:mod:`adapters.amqp.intake`), a pika ``BlockingConnection`` in a thread of its
own, reconnecting with the same :class:`~adapters.amqp.thread.Backoff` after a broker failure, and reading
the store from that thread (blocking, one connection per thread in the store). Between polls it services
the connection (heartbeats) with ``process_data_events``; ``stop()`` wakes it with pika's one thread-safe
call. A failing store does not drop the broker connection: the publisher waits by the same backoff and reads
again.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pika
import pika.exceptions
from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.logger import Logger

from adapters.amqp.thread import AmqpThread, Backoff, Session
from gateway.store import StoreError, VoucherStore
from gateway.workflow.queue_events import QueueEvent, event_of

log = Logger(namespace="vgw.event_publisher")

EVENTS_EXCHANGE = "vgw.events"
"""Durable topic exchange the events go to."""
EVENTS_CURSOR = "vgw.events"
"""The cursor's row in ``event_cursor`` (created by migration v0005 at the audit log's head)."""
POLL_SECONDS = 0.5
"""How long the publisher waits, servicing its connection, before it reads the audit log again once it
found nothing new: the delay an event can have on top of the commit."""
BATCH = 100
"""Audit entries read, published and confirmed per cursor move."""


class EventMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter("vgw_events_published", "Queue and status events published to vgw.events "
                                 "and confirmed by the broker (a republished one counts again)",
                                 registry=registry)
        self.connected = Gauge("vgw_events_connected", "1 while the event publisher is connected to its "
                               "broker, else 0", registry=registry, multiprocess_mode="livemax")


class EventPublisher(AmqpThread):
    """Publishes the events of new audit entries from ``store`` to ``exchange``; see the module docstring.

    ``start()`` connects and declares the exchange (raising what prevented it), then publishes in a thread
    of its own; ``stop()`` finishes the batch in hand (or abandons it, if the broker is gone) and closes.
    """

    def __init__(self, store: VoucherStore, parameters: pika.connection.Parameters, *,
                 exchange: str = EVENTS_EXCHANGE, cursor: str = EVENTS_CURSOR, batch: int = BATCH,
                 poll_interval: float = POLL_SECONDS, backoff: Backoff = Backoff(),
                 registry: CollectorRegistry | None = None) -> None:
        super().__init__(parameters, backoff)
        self.store = store
        self.exchange = exchange
        self.cursor = cursor
        self.batch = batch
        self.poll_interval = poll_interval
        self.metrics = EventMetrics(registry if registry is not None else CollectorRegistry())

    what = "event publisher"
    prefix = "events"

    def _log_fields(self) -> dict:
        return {"exchange": self.exchange}

    def _open(self, connection: pika.BlockingConnection) -> Session:
        channel = connection.channel()
        channel.exchange_declare(self.exchange, "topic", durable=True)
        channel.confirm_delivery()
        return Session(connection, channel)

    def _on_connected(self) -> None:
        self.metrics.connected.set(1)

    def _on_disconnected(self) -> None:
        self.metrics.connected.set(0)

    # --- publishing ---------------------------------------------------------------------------------------

    def _serve(self, session: Session) -> None:
        """Publish batches while there are any; when there are none, service the connection for
        ``poll_interval``; when the store fails, wait by the backoff (servicing the connection) and read again."""
        store_waits = None
        while not self._stopping.is_set():
            try:
                handled = self._publish_batch(session.channel)
                store_waits = None
            except StoreError as exc:
                store_waits = store_waits or self.backoff.delays()
                wait = next(store_waits)
                log.warn("event publisher cannot read or move its cursor ({error}); again in {wait_s} s",
                         event="events.store-failed", error=str(exc), wait_s=round(wait, 3))
                self._pause(session.connection, wait)
                continue
            if not handled:
                self._pause(session.connection, self.poll_interval)

    def _pause(self, connection, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            connection.process_data_events(time_limit=left)

    def _publish_batch(self, channel) -> int:
        """One batch after the cursor: publish its events (each confirmed), then move the cursor over every
        entry of it. Returns how many entries were handled (0: nothing new)."""
        position = self.store.event_cursor(self.cursor)
        entries = self.store.audit_entries(position, limit=self.batch)
        if not entries:
            return 0
        published = 0
        for entry in entries:
            if self._stopping.is_set():
                return 0  # the cursor stays: what was published of this batch is published again next time
            try:
                event = event_of(entry)
            except ValueError as exc:  # a stored entry no event can be made of: said loudly, not retried forever
                log.error("audit entry {seq} makes no valid event ({error}); skipped", event="events.skipped",
                          seq=entry.seq, error=str(exc))
                continue
            if event is None:
                continue
            self._publish(channel, self._with_due_date(event))
            published += 1
        last = entries[-1].seq
        if not self.store.advance_event_cursor(self.cursor, position, last):
            log.warn("the event cursor moved from {position} while this publisher published up to {last} (another "
                     "publisher); consumers receive those events twice", event="events.cursor-moved",
                     position=position, last=last)
        elif published:
            log.info("published {count} events up to audit entry {last}", event="events.published",
                     count=published, last=last)
        return len(entries)

    def _with_due_date(self, event: QueueEvent) -> QueueEvent:
        record = self.store.get(event.voucher_id, event.revision)
        return replace(event, due_on=record.due_on) if record is not None and record.due_on else event

    def _publish(self, channel, event: QueueEvent) -> None:
        """Publish one event and wait for the broker's confirm (pika raises NackError if it refuses it,
        which is then handled like a lost connection: the batch is published again)."""
        properties = pika.BasicProperties(content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent,
                                          message_id=str(event.event_id), type="queue" if event.role else "status",
                                          timestamp=int(event.at.timestamp()), app_id="vgw")
        channel.basic_publish(self.exchange, event.routing_key, event.body(), properties)
        self.metrics.published.inc()

