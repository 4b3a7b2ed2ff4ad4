"""The PostgreSQL store (psycopg 3): for several gateway processes sharing one database.

Concurrency choices:
- Every write transaction first locks the single ``audit_head`` row (``SELECT … FOR UPDATE``). That row is
  the chain's serialisation point across all processes: the next appender waits until the holder commits
  or rolls back, then reads the new head. ``UNIQUE(prev_hash)`` and the primary key on seq would refuse a
  fork even if that lock were ever bypassed.
- READ COMMITTED, not SERIALIZABLE: under the head lock the duplicate check sees every committed intake,
  and SERIALIZABLE would only add retry loops. The primary key (voucher_id, revision) is the backstop: a
  unique violation is answered as :class:`AlreadyStored` like the check itself.
- One connection per thread (a psycopg connection runs one transaction at a time), autocommit with
  explicit ``conn.transaction()`` blocks; a connection found broken is replaced on next use.
- Serialising every intake on one row bounds write throughput by commit latency; that is the price of one
  total order for the audit log, and batching several intakes per transaction is the lever if needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors

from adapters.storage.sql import AUDIT_COLUMNS, SqlStore
from gateway.audit import next_entry
from gateway.store import AuditEntry, AuditEvent, StoreError, canonical_json

_MIGRATION_LOCK = 0x76677731  # pg_advisory_xact_lock key: one migrator at a time per database ("vgw1")



class PostgresStore(SqlStore):
    """:class:`gateway.store.VoucherStore` over a PostgreSQL database named by a ``postgresql://`` URL."""

    dialect = "postgresql"
    driver_error = psycopg.Error
    unique_violation = pg_errors.UniqueViolation
    placeholder = "%s"
    cursor_tuple = "(%s::timestamptz, %s::text, %s::integer)"

    def _date_param(self, day):
        return day

    def __init__(self, url: str) -> None:
        self._url = url
        super().__init__()

    # --- connections -------------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self._url, autocommit=True)
            conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the PostgreSQL store: {exc}") from exc
        return conn

    def _usable(self, conn: psycopg.Connection) -> bool:
        return not (conn.closed or conn.broken)  # a broken connection is replaced on next use

    @contextmanager
    def _migration_tx(self) -> Iterator[psycopg.Connection]:
        conn = self._conn()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            yield conn

    @contextmanager
    def _chain_tx(self) -> Iterator[tuple[psycopg.Connection, Callable[[AuditEvent], AuditEntry]]]:
        conn = self._conn()
        with conn.transaction():
            head = self._lock_head(conn)

            def append(event: AuditEvent) -> AuditEntry:
                nonlocal head
                entry = self._append(conn, head, event)
                head = (entry.seq, entry.hash)
                return entry

            yield conn, append

    # --- inside a write transaction --------------------------------------------------------------------

    @staticmethod
    def _lock_head(conn: psycopg.Connection) -> tuple[int, str]:
        """Lock the chain head until this transaction ends; every appender in every process queues here."""
        seq, head_hash = conn.execute("SELECT seq, hash FROM audit_head WHERE one FOR UPDATE").fetchone()
        return seq, head_hash

    @staticmethod
    def _append(conn: psycopg.Connection, head: tuple[int, str], event: AuditEvent) -> AuditEntry:
        entry = next_entry(head[0], head[1], event)
        conn.execute(f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                     (entry.seq, event.at, event.actor, event.action, event.subject, event.document_sha256,
                      canonical_json(event.detail), entry.prev_hash, entry.hash))
        conn.execute("UPDATE audit_head SET seq = %s, hash = %s WHERE one", (entry.seq, entry.hash))
        return entry
