"""Version 11: people signed in to the web console with their card (gateway/sign_in).

Design notes kept with the schema:
- sign_in_challenges holds every challenge issued, so that one is used once, by the connection it was issued
  to (``connection``: the SHA-256 of the agency system's TLS client certificate the browser came through),
  and not after it expired. Consuming it and opening the session are one transaction.
- console_sessions stores only the SHA-256 of the session token the browser holds, never the token: a copy
  of the database opens no session. A session is bound to the connection it was opened over, ends when its
  holder signs out (``ended_at``), when it has been idle too long (``last_seen_at``) or at ``expires_at``.
- Both tables are small and short-lived; rows older than a day may be deleted at will (nothing refers to
  them: the audit log records every sign-in and sign-out with the person's certificate).
"""

from __future__ import annotations

VERSION = 11
DESCRIPTION = "console sessions"

_TABLES = [
    """CREATE TABLE sign_in_challenges (
        nonce TEXT{C} PRIMARY KEY,
        connection TEXT NOT NULL,
        issued_at {TIME} NOT NULL,
        expires_at {TIME} NOT NULL,
        used_at {TIME}
    )""",
    """CREATE TABLE console_sessions (
        session_hash TEXT{C} PRIMARY KEY,
        agency TEXT NOT NULL,
        person TEXT NOT NULL,
        roles TEXT NOT NULL,
        cert_issuer TEXT NOT NULL,
        cert_serial TEXT NOT NULL,
        connection TEXT NOT NULL,
        created_at {TIME} NOT NULL,
        last_seen_at {TIME} NOT NULL,
        expires_at {TIME} NOT NULL,
        ended_at {TIME}
    )""",
]
SQLITE = [t.format(C="", TIME="TEXT") for t in _TABLES]
POSTGRESQL = [t.format(C=' COLLATE "C"', TIME="TIMESTAMPTZ") for t in _TABLES]
