"""The event publisher's cursor on SQLite and a real PostgreSQL: where a reader stands, forward-only
compare-and-set moves, one winner when two readers move from the same place, and the seed at the audit
log's head when migration v0005 meets a database that already holds entries."""

from __future__ import annotations

import threading

import pytest

from gateway.store import StoreError

from .test_store_contract import backend, intake_event, make_record, pg_database, store  # noqa: F401

EVENTS_CURSOR = "vgw.events"
"""The gateway publisher's row, which migration v0005 seeds (adapters/amqp/event_publisher.py names it too)."""


def test_a_new_store_starts_every_reader_at_zero(store):
    assert store.event_cursor(EVENTS_CURSOR) == 0  # seeded by the migration at the (empty) log's head
    assert store.event_cursor("never-seen") == 0


def test_a_cursor_moves_forward_from_where_it_stands_and_only_from_there(store):
    assert store.advance_event_cursor("reader", 0, 5) is True  # a reader never seen stands at 0
    assert store.event_cursor("reader") == 5
    assert store.advance_event_cursor("reader", 0, 9) is False  # no longer at 0: nothing changes
    assert store.advance_event_cursor("reader", 4, 9) is False
    assert store.event_cursor("reader") == 5
    assert store.advance_event_cursor("reader", 5, 9) is True and store.event_cursor("reader") == 9
    assert store.event_cursor(EVENTS_CURSOR) == 0, "readers are independent"


@pytest.mark.parametrize("expected, seq", [(5, 5), (5, 4), (-1, 3), (0, True), (1.0, 2)])
def test_a_cursor_never_goes_back_or_stays_and_takes_only_whole_seqs(store, expected, seq):
    with pytest.raises(ValueError):
        store.advance_event_cursor("reader", expected, seq)
    assert store.event_cursor("reader") == 0


def test_of_readers_moving_from_the_same_place_at_once_exactly_one_wins(store):
    store.advance_event_cursor(EVENTS_CURSOR, 0, 10)
    barrier = threading.Barrier(8)
    results, errors = [], []

    def move(target: int) -> None:
        try:
            barrier.wait()
            results.append((target, store.advance_event_cursor(EVENTS_CURSOR, 10, target)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=move, args=(11 + n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    winners = [target for target, won in results if won]
    assert len(results) == 8 and len(winners) == 1
    assert store.event_cursor(EVENTS_CURSOR) == winners[0]


def test_the_migration_seeds_the_publisher_at_the_head_of_an_existing_log(backend):
    """A database migrated from v0004 with vouchers in it: events start with the next change, not with a
    replay of its history."""
    opened = backend.open()
    try:
        for number in (1, 2, 3):
            record = make_record(number)
            opened.record_intake(record, intake_event(record))
    finally:
        opened.close()
    # back to v0004: drop what v0005 and later created (later steps are re-applied after v0005 too)
    for statement in ("DROP TABLE console_sessions", "DROP TABLE sign_in_challenges",
                      "DROP TABLE deposit_notices", "DROP TABLE event_cursor", "DROP TABLE payments",
                      "DROP TABLE bank_messages",
                      "DROP INDEX intake_queue_all", "DELETE FROM schema_version WHERE version >= 5"):
        backend.execute(statement)
    reopened = backend.open()  # applies v0005 (and the later steps) again, to a log of three entries
    try:
        assert reopened.event_cursor(EVENTS_CURSOR) == 3
        assert reopened.event_cursor("other") == 0
    finally:
        reopened.close()


def test_a_closed_store_refuses_to_move_a_cursor(backend):
    opened = backend.open()
    opened.close()
    with pytest.raises(StoreError):
        opened.advance_event_cursor(EVENTS_CURSOR, 0, 1)
