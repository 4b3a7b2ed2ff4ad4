"""The outbox relay's turn: one relay at a time publishes a store's transfer messages, across processes.

Relays do not claim outbox rows: each reads the unsent messages and publishes them, marking each sent after
the broker's confirm. Two gateways running the bank exchange on one store therefore both published most
messages (measured: 5 messages, 8–10 publications). That is safe — the outbox holds the signed bytes, the
bank answers a known MsgId again from memory, the gateway takes the repeated reports as repeats — but it
doubles the bank's and the broker's work. So a relay publishes only while its process holds the store's
relay turn, and a relay without it skips its pump.

The turn is a lock that the operating system or the database releases when its holder dies, so no lease
has to run out and nothing stays stuck after a ``kill -9``:

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``, keyed by the store's schema, so
  stores in other schemas of one database do not share it) on a connection of its own. The server drops it
  when that connection ends: a graceful stop, a crash, or a killed process whose socket the kernel closes.
  The holder checks its connection at every pump; one found broken has lost the turn and asks again.
  That connection has short timeouts on both ends (:data:`CLIENT_TIMEOUTS`, :data:`SERVER_OPTIONS`): without
  them a holder whose host dies (no FIN, no RST) keeps the lock on the server until TCP's default keepalive
  notices, about two hours in which no gateway publishes a transfer, and the holder's own check on a
  half-open socket could wait some fifteen minutes for TCP's retransmissions to give up. With them the
  server drops a dead holder's session (and lock) within about 25 s, and the holder finds its own link dead
  within 30 s.
- SQLite: an exclusive ``flock`` on ``<database file>.relay-lock`` beside the database (one host only, like
  SQLite itself), which the kernel releases when the process ends.

A relay whose lock cannot be asked (the database is down) does not publish this pump and asks again at the
next. The holder keeps the turn while its broker link is down; the others use the same broker. Still at
least once: a holder that loses its database connection in the middle of a pump may finish publishing
while another relay takes the turn, and the bank takes the repeat as above.
"""

from __future__ import annotations

import fcntl
import os
import threading

import psycopg
from psycopg.conninfo import conninfo_to_dict

RELAY_LOCK = 0x76677732
"""Second key of the advisory lock (``"vgw2"``); the first is the hash of the store's schema."""
CLIENT_TIMEOUTS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                   "keepalives_count": 3, "tcp_user_timeout": 30_000}
"""libpq's side: give up connecting after 5 s; probe an idle link after 10 s, every 5 s, dead after 3 misses;
drop a link whose sent data goes unacknowledged for 30 s (milliseconds)."""
SERVER_OPTIONS = ("-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 "
                  "-c statement_timeout=5000")
"""The server's side of the same session: it probes the holder likewise, and no statement of the turn's
(a lock try, ``SELECT 1``) runs longer than 5 s."""


def turn_connect_kwargs(url: str) -> dict:
    """Keyword arguments for :func:`psycopg.connect` of the turn's connection to ``url``: the timeouts above,
    with :data:`SERVER_OPTIONS` added to any ``options`` the URL names (the store's ``search_path``)."""
    options = " ".join(filter(None, [conninfo_to_dict(url).get("options"), SERVER_OPTIONS]))
    return {"autocommit": True, **CLIENT_TIMEOUTS, "options": options}


class PostgresRelayTurn:
    """The relay turn on the PostgreSQL store at ``url`` (see module)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection | None = None
        self._holding = False
        self._lock = threading.Lock()

    def held(self) -> bool:
        """True while this process holds the turn, taking it when it is free."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._drop()
                    self._conn = psycopg.connect(self._url, **turn_connect_kwargs(self._url))
                if self._holding:
                    self._conn.execute("SELECT 1")  # still connected, so still holding
                    return True
                self._holding = self._conn.execute("SELECT pg_try_advisory_lock(hashtext(current_schema()), %s)",
                                                   (RELAY_LOCK,)).fetchone()[0]
                return self._holding
            except psycopg.Error:
                self._drop()
                return False

    def release(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        conn, self._conn, self._holding = self._conn, None, False
        if conn is not None:
            conn.close()  # ends the session, and with it the lock


class FileRelayTurn:
    """The relay turn on the SQLite store at ``database`` (see module)."""

    def __init__(self, database: str) -> None:
        self._path = f"{database}.relay-lock"
        self._fd: int | None = None
        self._lock = threading.Lock()

    def held(self) -> bool:
        with self._lock:
            if self._fd is not None:
                return True
            try:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another process (or another store in this one) holds it
                os.close(fd)
                return False
            self._fd = fd
            return True

    def release(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)  # closing the only descriptor releases the flock
