"""The storage port of console sign-in: challenges used once, sessions by the hash of their token.

Pure: the records and the Protocol the SQL stores satisfy (adapters/storage/sessions.py)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Protocol

from gateway.store import AuditEvent


@dataclass(frozen=True)
class ConsoleSession:
    """A person signed in over one agency connection."""

    session_hash: str
    agency: str
    person: str
    roles: str
    """The roles the person held for the agency when they signed in, comma-separated (shown on every page;
    what they may sign is judged by the registry at each signature, not by this)."""
    cert_issuer: str
    cert_serial: str
    connection: str
    created_at: datetime.datetime
    last_seen_at: datetime.datetime
    expires_at: datetime.datetime


class SessionStore(Protocol):
    def record_challenge(self, nonce: str, connection: str, issued_at: datetime.datetime,
                         expires_at: datetime.datetime) -> None:
        """Remember a challenge issued to ``connection``."""

    def open_session(self, nonce: str, session: ConsoleSession, event: AuditEvent) -> bool:
        """In ONE transaction: use the challenge ``nonce`` (issued to ``session.connection``, unused, not
        expired at ``session.created_at``), store ``session`` and append ``event``. False, changing nothing,
        when the challenge is unknown, another connection's, used or expired."""

    def session(self, session_hash: str, connection: str, now: datetime.datetime,
                idle: datetime.timedelta) -> ConsoleSession | None:
        """The open session of that token over ``connection``, its last use moved to ``now``; None when there is
        none, it ended, expired at ``now`` or was idle longer than ``idle``."""

    def end_session(self, session_hash: str, now: datetime.datetime, event: AuditEvent) -> bool:
        """End the session (signing out) and append ``event``; False when it was not open."""
