"""The SQLite store: the embedded default, one database file on the gateway's own disk.

Durability and ordering choices:
- WAL journal with ``synchronous=FULL``: a commit is on disk before ``record_intake`` returns, so a receipt
  is never issued for a voucher a power cut could take back (NORMAL would only keep the database intact).
- Every write starts with ``BEGIN IMMEDIATE``, taking SQLite's single write lock before reading the chain
  head, so two writers (threads or processes on this host) can never append after the same entry.
  ``UNIQUE(prev_hash)`` in the schema would refuse a fork anyway.
- One connection per thread (``sqlite3`` connections must not be shared by threads mid-transaction); WAL
  lets those readers run while a writer commits. Connections are kept in a list so ``close`` can close all;
  a thread that ends leaves its connection open until then, which suits a service's long-lived pool.
- A busy timeout makes writers queue for the lock instead of failing at once.
"""

from __future__ import annotations

import datetime
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from adapters.storage.sql import AUDIT_COLUMNS, SqlStore
from gateway.audit import next_entry
from gateway.store import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    StoreError,
    canonical_json,
    parse_utc_text,
    utc_text,
)

BUSY_TIMEOUT_S = 30.0


def _into_wal(conn: sqlite3.Connection) -> None:
    """Put the file into WAL mode (once: the mode is kept in the file). Switching needs an exclusive lock, and
    SQLite answers "database is locked" at once, without waiting out the busy timeout, while another process
    holds the write lock (it would otherwise risk a deadlock): two workers opening a new store together, one
    of them applying the migrations. So the switch is tried again until the busy timeout has passed."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # the other process's transaction is short (a migration, a write)


class SqliteStore(SqlStore):
    """:class:`gateway.store.VoucherStore` over one SQLite file."""

    dialect = "sqlite"
    driver_error = sqlite3.Error
    unique_violation = sqlite3.IntegrityError

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        super().__init__()

    def _time_param(self, at: datetime.datetime):
        return utc_text(at)

    def _time_value(self, value) -> datetime.datetime:
        return parse_utc_text(value)

    # --- connections and transactions ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            # check_same_thread=False only so close() may close it from another thread; in use it stays
            # with the thread that opened it. isolation_level=None: we issue BEGIN ourselves.
            conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            _into_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store {self._path}: {exc}") from exc
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the database's write lock from its first statement. Driver errors
        propagate as they are (the shared writers convert them); the transaction is rolled back first."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _chain_tx(self) -> Iterator[tuple[sqlite3.Connection, Callable[[AuditEvent], AuditEntry]]]:
        with self._write() as conn:
            head: list = []  # the chain head once read: the write lock is held, so no one else moves it

            def append(event: AuditEvent) -> AuditEntry:
                if not head:
                    head.append(conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
                                or (0, GENESIS_HASH))
                entry = self._append(conn, head[0], event)
                head[0] = (entry.seq, entry.hash)
                return entry

            yield conn, append

    def _migration_tx(self):
        return self._write()  # BEGIN IMMEDIATE: the database's one write lock

    # --- inside a write transaction --------------------------------------------------------------------

    @staticmethod
    def _append(conn: sqlite3.Connection, head: tuple[int, str], event: AuditEvent) -> AuditEntry:
        entry = next_entry(head[0], head[1], event)
        conn.execute(f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (entry.seq, utc_text(event.at), event.actor, event.action, event.subject,
                      event.document_sha256, canonical_json(event.detail), entry.prev_hash, entry.hash))
        return entry
