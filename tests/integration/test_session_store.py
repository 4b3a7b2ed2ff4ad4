"""Console sign-in sessions in both stores (adapters/storage/sessions.py): a challenge opens one session, over
the connection it was issued to, before it expires; a session ends at sign-out, when idle, or at its end;
each sign-in and sign-out is in the audit chain."""

from __future__ import annotations

import datetime

from gateway.sign_in.store import ConsoleSession
from gateway.store import AuditEvent

from .test_store_contract import backend, pg_database, store  # noqa: F401

T0 = datetime.datetime(2026, 12, 8, 9, 0, tzinfo=datetime.timezone.utc)
IDLE = datetime.timedelta(minutes=15)


def session(n: int, connection: str = "c" * 64, at: datetime.datetime = T0) -> ConsoleSession:
    return ConsoleSession(f"{n:064x}", "379000001A", "王小明", "accountant", "CN=MOICA", "1A2B", connection, at, at,
                          at + datetime.timedelta(hours=8))


def event(action: str) -> AuditEvent:
    return AuditEvent(T0, "person:1A2B", action, "379000001A")


def test_a_challenge_opens_one_session_over_its_own_connection_before_it_expires(store):
    store.record_challenge("n" * 43, "c" * 64, T0, T0 + datetime.timedelta(minutes=3))
    assert not store.open_session("n" * 43, session(1, connection="d" * 64), event("console.sign-in"))
    assert not store.open_session("x" * 43, session(1), event("console.sign-in"))
    late = session(1, at=T0 + datetime.timedelta(minutes=3))
    assert not store.open_session("n" * 43, late, event("console.sign-in"))
    assert store.open_session("n" * 43, session(1), event("console.sign-in"))
    assert not store.open_session("n" * 43, session(2), event("console.sign-in"))  # used once
    assert [e.event.action for e in store.audit_entries(after_seq=0, limit=10)] == ["console.sign-in"]


def test_a_session_ends_at_sign_out_when_idle_and_at_its_end(store):
    for n in (1, 2, 3):
        store.record_challenge(f"{n}" * 43, "c" * 64, T0, T0 + datetime.timedelta(minutes=3))
        assert store.open_session(f"{n}" * 43, session(n), event("console.sign-in"))
    found = store.session(session(1).session_hash, "c" * 64, T0 + datetime.timedelta(minutes=10), IDLE)
    assert found is not None and (found.person, found.roles) == ("王小明", "accountant")
    assert store.session(session(1).session_hash, "d" * 64, T0, IDLE) is None  # another connection
    # still in use after 20 minutes: it was used at 10
    assert store.session(session(1).session_hash, "c" * 64, T0 + datetime.timedelta(minutes=20), IDLE) is not None
    assert store.session(session(2).session_hash, "c" * 64, T0 + datetime.timedelta(minutes=16), IDLE) is None
    assert store.session(session(3).session_hash, "c" * 64, T0 + datetime.timedelta(hours=8), IDLE) is None
    assert store.end_session(session(1).session_hash, T0 + datetime.timedelta(minutes=21), event("console.sign-out"))
    assert not store.end_session(session(1).session_hash, T0 + datetime.timedelta(minutes=22), event("console.sign-out"))
    assert store.session(session(1).session_hash, "c" * 64, T0 + datetime.timedelta(minutes=22), IDLE) is None
