"""What both SQL stores share: one connection per thread, the column lists, rows into records, every read.

For reads the backends differ only in the DB-API placeholder (``?`` for sqlite3, ``%s`` for psycopg) and in
how a time is kept (SQLite: fixed-width UTC text; PostgreSQL: TIMESTAMPTZ), so subclasses give those and
how to connect, and inherit the rest. Migrations and writes stay in each store: their locking is where the
backends really differ.
"""

from __future__ import annotations

import abc
import datetime
import json
import threading

from gateway.store import (
    AuditEntry,
    AuditEvent,
    IntakeRecord,
    StoreError,
    UnreadableAuditEntry,
    check_limit,
    decode_cursor,
    encode_cursor,
    utc,
)

INTAKE_COLUMNS = ("voucher_id, revision, agency, received_sha256, received_bytes, received_at, status, "
                  "receipt_id, receipt_xml, summary")
AUDIT_COLUMNS = "seq, at, actor, action, subject, document_sha256, detail, prev_hash, hash"


class SqlStore(abc.ABC):
    """Base of the SQLite and PostgreSQL stores (:class:`gateway.store.VoucherStore`)."""

    dialect = ""
    """How messages and migrations name the backend."""
    driver_error: type[Exception] = Exception
    """The driver's root exception, turned into :class:`StoreError`."""
    placeholder = "?"
    """The DB-API parameter marker of the driver."""
    cursor_tuple = "(?, ?, ?)"
    """The row value a page cursor is compared with (PostgreSQL needs explicit casts)."""

    def __init__(self) -> None:
        # One connection per thread: neither driver's connections may run two transactions at once. All are
        # kept so close() can close them; a thread that ends leaves its connection open until then.
        self._local = threading.local()
        self._connections: list = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    @abc.abstractmethod
    def _connect(self):
        """A new connection, set up for this backend; raises StoreError when it cannot be had."""

    def _usable(self, conn) -> bool:
        """Whether this thread's connection can still be used (a PostgreSQL one can break)."""
        return True

    @abc.abstractmethod
    def _migrate(self) -> None:
        """Bring the schema to the version this code knows, or refuse a newer one."""

    def _conn(self):
        if self._closed:
            raise StoreError("the store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None or not self._usable(conn):
            conn = self._connect()
            with self._lock:
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def _read(self, sql: str, params: tuple = ()) -> list:
        try:
            return self._conn().execute(sql, params).fetchall()
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} read failed: {exc}") from exc

    def _time_param(self, at: datetime.datetime):
        """A time as the backend stores it."""
        return at

    def _time_value(self, value) -> datetime.datetime:
        """A stored time back as an aware datetime."""
        return value

    def _sql(self, text: str) -> str:
        return text.replace("?", self.placeholder)

    def _record(self, row) -> IntakeRecord:
        return IntakeRecord(row[0], row[1], row[2], row[3], bytes(row[4]), self._time_value(row[5]), row[6],
                            row[7], bytes(row[8]), json.loads(row[9]))

    def _entry(self, row) -> AuditEntry:
        try:
            event = AuditEvent(self._time_value(row[1]), row[2], row[3], row[4], row[5], json.loads(row[6]))
        except (ValueError, TypeError) as exc:
            raise UnreadableAuditEntry(row[0], str(exc)) from None
        return AuditEntry(row[0], event, row[7], row[8])

    def get(self, voucher_id: str, revision: int | None = None) -> IntakeRecord | None:
        if revision is None:
            rows = self._read(self._sql(f"SELECT {INTAKE_COLUMNS} FROM intake WHERE voucher_id = ? "
                                        "ORDER BY revision DESC LIMIT 1"), (voucher_id,))
        else:
            rows = self._read(self._sql(f"SELECT {INTAKE_COLUMNS} FROM intake WHERE voucher_id = ? "
                                        "AND revision = ?"), (voucher_id, revision))
        return self._record(rows[0]) if rows else None

    def revisions(self, voucher_id: str) -> list[IntakeRecord]:
        rows = self._read(self._sql(f"SELECT {INTAKE_COLUMNS} FROM intake WHERE voucher_id = ? ORDER BY revision"),
                          (voucher_id,))
        return [self._record(row) for row in rows]

    def list_for_agency(self, agency: str, *, status: str | None = None,
                        received_from: datetime.datetime | None = None,
                        received_to: datetime.datetime | None = None, after: str | None = None,
                        limit: int = 100) -> tuple[list[IntakeRecord], str | None]:
        check_limit(limit)
        where, params = ["agency = ?"], [agency]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if received_from is not None:
            where.append("received_at >= ?")
            params.append(self._time_param(utc(received_from, "received_from")))
        if received_to is not None:
            where.append("received_at < ?")
            params.append(self._time_param(utc(received_to, "received_to")))
        if after is not None:
            at, voucher_id, revision = decode_cursor(after)
            where.append(f"(received_at, voucher_id, revision) > {self.cursor_tuple}")
            params += [self._time_param(at), voucher_id, revision]
        rows = self._read(self._sql(f"SELECT {INTAKE_COLUMNS} FROM intake WHERE {' AND '.join(where)} "
                                    "ORDER BY received_at, voucher_id, revision LIMIT ?"), (*params, limit + 1))
        records = [self._record(row) for row in rows[:limit]]
        return records, (encode_cursor(records[-1]) if len(rows) > limit else None)

    def audit_entries(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        check_limit(limit)
        rows = self._read(self._sql(f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"),
                          (after_seq, limit))
        return [self._entry(row) for row in rows]
