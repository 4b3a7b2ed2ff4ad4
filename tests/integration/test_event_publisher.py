"""The event publisher against a real RabbitMQ: publish first, move the cursor after, so a failure between
the two republishes (same message ids) and loses nothing, and a new publisher goes on from the stored cursor.

In process, with a SQLite store and an exchange of the test's own (unique name, deleted afterwards); the
end-to-end path through `vgw serve` is in test_amqp_actions_and_events.py.
"""

from __future__ import annotations

import json
import time
import uuid

import pika
import pytest

from adapters.amqp.event_publisher import EVENTS_CURSOR, EventPublisher
from adapters.amqp.intake import Backoff
from adapters.storage.factory import open_store
from gateway.store import AuditEvent, StoreError

from .test_amqp_intake import amqp_parameters  # noqa: F401  (fixture: the shared broker)
from .test_store_contract import T0, intake_event, make_record

QUICK = Backoff(first=0.01, factor=2.0, cap=0.05)


@pytest.fixture
def parameters(amqp_parameters) -> pika.URLParameters:
    return amqp_parameters


@pytest.fixture
def store(tmp_path):
    opened = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield opened
    opened.close()


class Listener:
    """An agency's queue bound to the test's exchange with ``#`` (the exchange is declared here first, as
    the publisher will: the same arguments)."""

    def __init__(self, parameters: pika.URLParameters) -> None:
        self.exchange = f"test.events.{uuid.uuid4().hex[:8]}"
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        self.channel.exchange_declare(self.exchange, "topic", durable=True)
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, self.exchange, routing_key="#")

    def drain(self) -> list[tuple[str, str, dict]]:
        """Everything waiting now: (message_id, routing key, body)."""
        got = []
        while True:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return got
            got.append((properties.message_id, method.routing_key, json.loads(body)))

    def close(self) -> None:
        self.channel.exchange_delete(self.exchange)
        self.connection.close()


@pytest.fixture
def listener(parameters):
    opened = Listener(parameters)
    yield opened
    opened.close()


class CursorFailsOnce:
    """The store, except that the first cursor move fails as if the database had gone away after the
    broker confirmed the batch (the window a crash would hit)."""

    def __init__(self, store) -> None:
        self._store = store
        self.failed = False

    def advance_event_cursor(self, name, expected, seq):
        if not self.failed:
            self.failed = True
            raise StoreError("the database went away")
        return self._store.advance_event_cursor(name, expected, seq)

    def __getattr__(self, name):
        return getattr(self._store, name)


def record(store, number: int) -> str:
    stored = make_record(number)
    store.record_intake(stored, intake_event(stored))
    return stored.voucher_id


def wait_for_cursor(store, seq: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while store.event_cursor(EVENTS_CURSOR) != seq:
        assert time.monotonic() < deadline, f"the cursor did not reach {seq} within {timeout} s"
        time.sleep(0.02)  # polling the store with a deadline


def publisher(store, parameters, listener) -> EventPublisher:
    return EventPublisher(store, parameters, exchange=listener.exchange, poll_interval=0.02, backoff=QUICK)


def test_a_failure_after_publishing_republishes_the_batch_and_a_new_publisher_goes_on_from_the_cursor(
        store, parameters, listener):
    vouchers = [record(store, n) for n in (1, 2, 3)]
    flaky = CursorFailsOnce(store)
    first = publisher(flaky, parameters, listener)
    first.start()
    try:
        wait_for_cursor(store, 3)
    finally:
        first.stop()
    assert flaky.failed
    got = listener.drain()
    # Published, then the cursor move failed: the batch went out again, with the same message ids.
    assert [message_id for message_id, _, _ in got] == ["1", "2", "3", "1", "2", "3"]
    assert {routing_key for _, routing_key, _ in got} == {"queue.379000001A.reviewer"}
    assert [body["voucher_id"] for _, _, body in got[:3]] == vouchers
    assert all(body["event_id"] == int(message_id) for message_id, _, body in got)

    # Stopped: more changes wait in the log; a new publisher starts where the cursor stands.
    later = [record(store, n) for n in (4, 5)]
    store.append_audit(AuditEvent(T0, "operator:test", "budget.load", "allotments:x.csv", None, {"allotments": 1}))
    second = publisher(store, parameters, listener)
    second.start()
    try:
        wait_for_cursor(store, 6)  # over the budget entry too, which publishes nothing
    finally:
        second.stop()
    got = listener.drain()
    assert [(message_id, body["voucher_id"]) for message_id, _, body in got] == [("4", later[0]), ("5", later[1])]


def test_stopping_leaves_nothing_half_done_and_the_cursor_where_the_broker_confirmed(store, parameters, listener):
    for n in range(1, 251):  # more than two batches
        record(store, n)
    running = publisher(store, parameters, listener)
    running.start()
    running.stop()
    position = store.event_cursor(EVENTS_CURSOR)
    got = listener.drain()
    # Whatever the cursor passed was published and confirmed; what was published beyond it (a batch cut short
    # by the stop) comes again from the next publisher: at least once.
    assert [int(message_id) for message_id, _, _ in got][:position] == list(range(1, position + 1))
    again = publisher(store, parameters, listener)
    again.start()
    try:
        wait_for_cursor(store, 250)
    finally:
        again.stop()
    seen = {int(message_id) for message_id, _, _ in got + listener.drain()}
    assert seen == set(range(1, 251))
