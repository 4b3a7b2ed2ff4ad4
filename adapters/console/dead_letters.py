"""The bank exchange's dead-letter queue on RabbitMQ, for an operator: look at what is in it, and replay one
message to the queue it died from.

Blocking pika, one short connection per request (run in the thread pool, never on the reactor): the console
is used by a few people, and a connection of its own keeps it apart from the bank worker's.

- :meth:`DeadLetters.peek` takes up to N messages without acknowledging them and closes the channel, which
  puts every one back: looking changes nothing but RabbitMQ's delivery count.
- :meth:`DeadLetters.replay` finds the message by id (and the SHA-256 of the body the operator saw), publishes
  the same body and properties to the queue named in its newest ``x-death`` entry through the default
  exchange, waits for the broker's confirm, has the caller record the replay in the audit log, and only then
  acknowledges it from the dead-letter queue. A crash between the confirm and the ack leaves the message in
  both queues: it is delivered at least once, never lost, and the bank exchange's handlers are idempotent
  (a report already applied is a repeat). Nothing is published unless it was found, and a refused publish
  (the queue is full, gone, or nacked) leaves it where it was. A replay reads the queue one message at a
  time and stops at the one named, keeping only the delivery tags of those before it (not up to
  :data:`MAX_SCAN` bodies).

Every connection has timeouts (:data:`BLOCKED_TIMEOUT`): without ``blocked_connection_timeout`` a publish waiting
for its confirm hangs for as long as the broker blocks publishers (a memory or disk alarm), holding a thread
of the pool. A broker that cannot be reached, blocks too long or closes the channel (the dead-letter queue
is not declared yet) is ``broker-unavailable`` (503), never a 500."""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import pika
from pika.exceptions import AMQPError, ChannelClosedByBroker, NackError, UnroutableError

from adapters.bank.transport import BankTopology
from gateway.errors import Refusal

PREVIEW_BYTES = 2000
MAX_SCAN = 500
"""How many dead letters a replay looks through for the one named (the page shows at most this many too)."""
BLOCKED_TIMEOUT = 30
"""Seconds a publish may wait while the broker blocks publishers (pika's default: forever). pika's own
defaults already bound one socket operation (10 s) and connecting (15 s, handshakes included)."""


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    body: bytes
    headers: dict
    died_in: str | None
    """The queue of the newest ``x-death`` entry: where a replay sends it."""
    reason: str | None
    deaths: int
    died_at: datetime.datetime | None
    properties: pika.BasicProperties

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def preview(self) -> str:
        return self.body[:PREVIEW_BYTES].decode("utf-8", "replace")


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_dead_letter(properties: pika.BasicProperties, body: bytes) -> DeadLetter:
    headers = dict(properties.headers or {})
    deaths = headers.get("x-death") or []
    newest = deaths[0] if deaths and isinstance(deaths[0], dict) else {}
    died_at = newest.get("time")
    return DeadLetter(properties.message_id, body, headers, _text(newest.get("queue")), _text(newest.get("reason")),
                      int(newest.get("count", 0) or 0), died_at if isinstance(died_at, datetime.datetime) else None,
                      properties)


class DeadLetters:
    def __init__(self, parameters: pika.ConnectionParameters, topology: BankTopology) -> None:
        """``parameters`` are copied and given :data:`BLOCKED_TIMEOUT` unless they name one of their own."""
        self.parameters = copy.copy(parameters)
        if self.parameters.blocked_connection_timeout is None:
            self.parameters.blocked_connection_timeout = BLOCKED_TIMEOUT
        self.topology = topology

    @contextlib.contextmanager
    def _channel(self):
        """A channel on a connection of its own, closed after; a broker failure is ``broker-unavailable``."""
        connection = None
        try:
            connection = pika.BlockingConnection(self.parameters)
            yield connection.channel()
        except AMQPError as exc:
            raise Refusal("broker-unavailable", f"the bank's broker cannot be reached or refused "
                          f"{self.topology.dead_letter_queue}: {exc!r}") from None
        finally:
            if connection is not None and connection.is_open:
                with contextlib.suppress(AMQPError):
                    connection.close()  # returns every unacknowledged message to the queue

    def _letters(self, channel, limit: int):
        """(delivery tag, dead letter) of up to ``limit`` messages, taken one at a time, unacknowledged."""
        for _ in range(limit):
            method, properties, body = channel.basic_get(self.topology.dead_letter_queue, auto_ack=False)
            if method is None:
                return
            yield method.delivery_tag, read_dead_letter(properties, body)

    def peek(self, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, oldest first, all left in the queue."""
        with self._channel() as channel:
            letters = [letter for _, letter in self._letters(channel, min(limit, MAX_SCAN))]
            channel.close()  # returns every unacknowledged message to the queue
            return letters

    def replay(self, message_id: str, sha256: str, record: Callable[[DeadLetter], None]) -> DeadLetter:
        """Republish the dead letter ``message_id`` whose body has ``sha256`` to the queue it died from; call
        ``record(letter)`` (the audit entry) after the broker confirmed it and before it is acknowledged from
        the dead-letter queue. Refusal ``not-found`` if it is not there (already replayed, or another body)."""
        with self._channel() as channel:
            found = next(((tag, letter) for tag, letter in self._letters(channel, MAX_SCAN)
                          if letter.message_id == message_id and letter.sha256 == sha256), None)
            if found is None:
                raise Refusal("not-found", f"no dead letter {message_id} with that body is in "
                              f"{self.topology.dead_letter_queue} (already replayed?)")
            tag, letter = found
            if letter.died_in not in (self.topology.transfers_queue, self.topology.reports_queue):
                raise Refusal("replay-refused", f"{message_id} did not die in a bank queue ({letter.died_in!r}); "
                              "it cannot be replayed from here")
            channel.confirm_delivery()
            properties = pika.BasicProperties(message_id=letter.properties.message_id,
                                              content_type=letter.properties.content_type,
                                              headers=letter.properties.headers, delivery_mode=2)
            try:
                channel.basic_publish("", letter.died_in, letter.body, properties, mandatory=True)
            except (UnroutableError, NackError, ChannelClosedByBroker) as exc:
                raise Refusal("replay-refused", f"the broker refused the replay of {message_id} to "
                              f"{letter.died_in}: {exc!r}; it stays in the dead-letter queue") from None
            record(letter)
            channel.basic_ack(tag)
            channel.close()  # the others go back
            return letter
