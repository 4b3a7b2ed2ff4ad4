"""Console sign-in in SQL (gateway/sign_in/store.py), shared by the SQLite and PostgreSQL stores.

A mixin of :class:`adapters.storage.sql.SqlStore`. Using a challenge and opening the session are one
transaction inside the audit chain's lock, with the sign-in's audit event: a challenge opens at most one
session, whatever two workers do at once (the conditional UPDATE finds it unused only once).
"""

from __future__ import annotations

import datetime

from gateway.sign_in.store import ConsoleSession
from gateway.store import StoreError

_SESSION_COLUMNS = ("session_hash, agency, person, roles, cert_issuer, cert_serial, connection, created_at, "
                    "last_seen_at, expires_at")
TOUCH_EVERY = datetime.timedelta(seconds=30)
"""A session's last use is written at most this often: a page view need not be a write."""


class SessionSql:
    """Sign-in statements; expects the SqlStore helpers (_sql, _read, _write/_chain_tx, _time_param)."""

    def record_challenge(self, nonce: str, connection: str, issued_at: datetime.datetime,
                         expires_at: datetime.datetime) -> None:
        try:
            with self._plain_tx() as conn:
                conn.execute(self._sql("INSERT INTO sign_in_challenges (nonce, connection, issued_at, expires_at) "
                                       "VALUES (?, ?, ?, ?)"),
                             (nonce, connection, self._time_param(issued_at), self._time_param(expires_at)))
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} could not record a sign-in challenge: {exc}") from exc

    def open_session(self, nonce: str, session: ConsoleSession, event) -> bool:
        at = self._time_param(session.created_at)
        try:
            with self._chain_tx() as (conn, append):
                used = conn.execute(self._sql(
                    "UPDATE sign_in_challenges SET used_at = ? WHERE nonce = ? AND connection = ? AND used_at IS NULL "
                    "AND expires_at > ?"), (at, nonce, session.connection, at)).rowcount
                if used != 1:
                    return False
                conn.execute(self._sql(f"INSERT INTO console_sessions ({_SESSION_COLUMNS}) VALUES "
                                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                             (session.session_hash, session.agency, session.person, session.roles, session.cert_issuer,
                              session.cert_serial, session.connection, at, at,
                              self._time_param(session.expires_at)))
                append(event)
                return True
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} could not open a console session: {exc}") from exc

    def session(self, session_hash: str, connection: str, now: datetime.datetime,
                idle: datetime.timedelta) -> ConsoleSession | None:
        rows = self._read(self._sql(f"SELECT {_SESSION_COLUMNS} FROM console_sessions WHERE session_hash = ? AND "
                                    "connection = ? AND ended_at IS NULL"), (session_hash, connection))
        if not rows:
            return None
        row = rows[0]
        found = ConsoleSession(*row[:7], *(self._time_value(v) for v in row[7:10]))
        if found.expires_at <= now or found.last_seen_at + idle <= now:
            return None
        if now - found.last_seen_at >= TOUCH_EVERY:
            try:
                with self._plain_tx() as conn:
                    conn.execute(self._sql("UPDATE console_sessions SET last_seen_at = ? WHERE session_hash = ? AND "
                                           "ended_at IS NULL"), (self._time_param(now), session_hash))
            except self.driver_error as exc:
                raise StoreError(f"{self.dialect} could not keep a console session: {exc}") from exc
        return found

    def end_session(self, session_hash: str, now: datetime.datetime, event) -> bool:
        try:
            with self._chain_tx() as (conn, append):
                ended = conn.execute(self._sql("UPDATE console_sessions SET ended_at = ? WHERE session_hash = ? AND "
                                               "ended_at IS NULL"), (self._time_param(now), session_hash)).rowcount
                if ended != 1:
                    return False
                append(event)
                return True
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} could not end a console session: {exc}") from exc
