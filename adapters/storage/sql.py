"""What both SQL stores share: one connection per thread, the column lists, rows into records, every read.

For reads the backends differ only in the DB-API placeholder (``?`` for sqlite3, ``%s`` for psycopg) and in
how a time is kept (SQLite: fixed-width UTC text; PostgreSQL: TIMESTAMPTZ), so subclasses give those and
how to connect, and inherit the rest. Writes are shared too, written once against ``_chain_tx``: the one
thing each backend gives is how a write transaction serialises the audit chain (SQLite: ``BEGIN
IMMEDIATE``; PostgreSQL: the locked ``audit_head`` row), which is where the backends really differ.
"""

from __future__ import annotations

import abc
import datetime
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from adapters.storage import migrations
from adapters.storage.bank import BankSql
from adapters.storage.budget import BudgetSql
from adapters.storage.notices import NoticeSql
from adapters.storage.sessions import SessionSql
from gateway.store import (
    ActionAlreadyStored,
    ActionRecord,
    AlreadyStored,
    AuditEntry,
    AuditEvent,
    IntakeRecord,
    StatusChanged,
    StoreError,
    UnreadableAuditEntry,
    VoucherHead,
    WorkflowWrite,
    canonical_json,
    check_cursor_move,
    check_intake_pair,
    check_limit,
    decode_cursor,
    encode_cursor,
    utc,
)

INTAKE_COLUMNS = ("voucher_id, revision, agency, received_sha256, received_bytes, received_at, status, "
                  "receipt_id, receipt_xml, summary, chain_sha256, status_at, due_on")
ACTION_COLUMNS = ("voucher_id, revision, stage, agency, decision, action_sha256, action_bytes, signed_at, "
                  "received_at, person, key_sha256, certificate, grant_kind, receipt_id, receipt_xml, status_after, "
                  "reason_code, reason_text")

Append = Callable[[AuditEvent], AuditEntry]
"""Appends one event to the audit chain inside the current write transaction."""


def _date_value(value) -> datetime.date | None:
    """A stored due date back as a date: SQLite keeps ISO text, PostgreSQL a DATE."""
    if value is None or isinstance(value, datetime.date):
        return value
    return datetime.date.fromisoformat(value)


def _marks(columns: str) -> str:
    return ", ".join("?" for _ in columns.split(","))
AUDIT_COLUMNS = "seq, at, actor, action, subject, document_sha256, detail, prev_hash, hash"


class SqlStore(BudgetSql, BankSql, NoticeSql, SessionSql, abc.ABC):
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

    @contextmanager
    def _plain_tx(self) -> Iterator:
        """A write transaction that does not take the audit chain's lock (for writes that append nothing: a
        notice's claim, a sign-in challenge): SQLite's BEGIN IMMEDIATE, or a plain PostgreSQL transaction."""
        if self.dialect == "sqlite":
            with self._write() as conn:
                yield conn
            return
        conn = self._conn()
        with conn.transaction():
            yield conn

    @abc.abstractmethod
    def _connect(self):
        """A new connection, set up for this backend; raises StoreError when it cannot be had."""

    def _usable(self, conn) -> bool:
        """Whether this thread's connection can still be used (a PostgreSQL one can break)."""
        return True

    @abc.abstractmethod
    def _migration_tx(self) -> AbstractContextManager:
        """One transaction holding the backend's migration lock, yielding its connection."""

    def _migrate(self) -> None:
        """Bring the schema to the version this code knows, or refuse a newer one: every missing step in ONE
        transaction under the backend's migration lock, so two processes opening at once apply each step once."""
        try:
            with self._migration_tx() as conn:
                conn.execute(migrations.SCHEMA_VERSION_DDL[self.dialect])
                current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
                for step in migrations.pending(current):
                    for statement in step.statements(self.dialect):
                        conn.execute(statement)
                    if step.backfill is not None:
                        step.backfill(conn, self._sql)
                    conn.execute(self._sql("INSERT INTO schema_version (version, description) VALUES (?, ?)"),
                                 (step.version, step.description))
        except self.driver_error as exc:
            raise StoreError(f"cannot migrate the {self.dialect} store: {exc}") from exc

    @abc.abstractmethod
    def _chain_tx(self) -> AbstractContextManager[tuple[object, Append]]:
        """One write transaction holding the audit chain's lock: yields the connection and an appender;
        commits when the block ends, rolls back if it raises. Driver errors propagate unconverted."""

    unique_violation: type[Exception] = Exception
    """The driver's error for a unique-key violation (the backstop behind every "already stored" check)."""

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
        if (turn := self.__dict__.get("_relay_turn")) is not None:
            turn.release()  # the outbox relay's turn (adapters/storage/relay_turn.py) goes to another process

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
                            row[7], bytes(row[8]), json.loads(row[9]), row[10], self._time_value(row[11]),
                            _date_value(row[12]))

    def _action(self, row) -> ActionRecord:
        return ActionRecord(row[0], row[1], row[2], row[3], row[4], row[5], bytes(row[6]), self._time_value(row[7]),
                            self._time_value(row[8]), row[9], row[10], row[11], row[12], row[13], bytes(row[14]),
                            row[15], row[16], row[17])

    # --- writes --------------------------------------------------------------------------------------------

    def record_intake(self, record: IntakeRecord, event: AuditEvent,
                      also: WorkflowWrite | None = None) -> IntakeRecord:
        check_intake_pair(record, event)
        try:
            with self._chain_tx() as (conn, append):
                existing = conn.execute(self._sql(f"SELECT {INTAKE_COLUMNS} FROM intake WHERE voucher_id = ? "
                                                  "AND revision = ?"), (record.voucher_id, record.revision)).fetchone()
                if existing is not None:
                    raise AlreadyStored(self._record(existing))
                entry = append(event)
                conn.execute(self._sql(f"INSERT INTO intake ({INTAKE_COLUMNS}, audit_seq) "
                                       f"VALUES ({_marks(INTAKE_COLUMNS)}, ?)"),
                             (record.voucher_id, record.revision, record.agency, record.received_sha256,
                              record.received_bytes, self._time_param(record.received_at), record.status,
                              record.receipt_id, record.receipt_xml, canonical_json(record.summary),
                              record.chain_sha256, self._time_param(record.status_at),
                              record.due_on.isoformat() if record.due_on else None, entry.seq))
                if also is not None:
                    self._write_workflow(conn, append, also)
        except self.unique_violation as exc:
            existing = self.get(record.voucher_id, record.revision)
            if existing is not None:
                raise AlreadyStored(existing) from None
            raise StoreError(f"{self.dialect} refused the intake: {exc}") from exc
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} write failed: {exc}") from exc
        return record

    def apply_workflow(self, write: WorkflowWrite) -> None:
        try:
            with self._chain_tx() as (conn, append):
                self._write_workflow(conn, append, write)
        except self.unique_violation as exc:
            action = write.action
            existing = self.actions_at(action.voucher_id, action.revision, action.stage) if action else None
            if existing is not None:
                raise ActionAlreadyStored(existing) from None
            raise StoreError(f"{self.dialect} refused the workflow write: {exc}") from exc
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} write failed: {exc}") from exc

    def append_audit(self, event: AuditEvent) -> AuditEntry:
        try:
            with self._chain_tx() as (_conn, append):
                return append(event)
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} write failed: {exc}") from exc

    def _write_workflow(self, conn, append: Append, write: WorkflowWrite) -> None:
        """Inside a chain transaction: the action first (its stage may be taken), then each status change as
        a compare-and-set, the budget operations (a reservation may no longer fit), the payee index, then the
        events; any refusal rolls the whole transaction back."""
        action = write.action
        if action is not None:
            row = conn.execute(self._sql(f"SELECT {ACTION_COLUMNS} FROM actions WHERE voucher_id = ? AND "
                                         "revision = ? AND stage = ?"),
                               (action.voucher_id, action.revision, action.stage)).fetchone()
            if row is not None:
                raise ActionAlreadyStored(self._action(row))
        self._change_statuses(conn, write.changes)
        at = write.changes[0].at
        for op in write.budget:
            self._apply_budget(conn, op, at)
        self._index_payees(conn, write.payees, at)
        entries = [append(event) for event in write.events]
        if action is not None:
            seq = next(e.seq for e in entries if e.event.document_sha256 == action.action_sha256)
            conn.execute(self._sql(f"INSERT INTO actions ({ACTION_COLUMNS}, audit_seq) "
                                   f"VALUES ({_marks(ACTION_COLUMNS)}, ?)"),
                         (action.voucher_id, action.revision, action.stage, action.agency, action.decision,
                          action.action_sha256, action.action_bytes, self._time_param(action.signed_at),
                          self._time_param(action.received_at), action.person, action.key_sha256,
                          action.certificate, action.grant_kind, action.receipt_id, action.receipt_xml,
                          action.status_after, action.reason_code, action.reason_text, seq))

    def _change_statuses(self, conn, changes) -> None:
        """Each :class:`StatusChange` as a compare-and-set on (status, chain head); :class:`StatusChanged` if one
        no longer holds (the caller's transaction then rolls back)."""
        cursor = conn.cursor()
        cursor.executemany(self._sql(
            "UPDATE intake SET status = ?, chain_sha256 = ?, status_at = ? "
            "WHERE voucher_id = ? AND revision = ? AND status = ? AND chain_sha256 = ?"),
            [(change.new_status, change.new_chain, self._time_param(change.at), change.voucher_id,
              change.revision, change.expected_status, change.expected_chain) for change in changes])
        if cursor.rowcount != len(changes):
            first = changes[0]
            which = (f"{first.voucher_id}#{first.revision} is" if len(changes) == 1
                     else f"{len(changes) - cursor.rowcount} of {len(changes)} revisions are")
            raise StatusChanged(f"{which} no longer in the status and chain they were read with")

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

    def heads(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], VoucherHead]:
        wanted = set(keys)
        found: dict[tuple[str, int], VoucherHead] = {}
        voucher_ids = sorted({voucher_id for voucher_id, _ in keys})
        for start in range(0, len(voucher_ids), 300):
            chunk = voucher_ids[start:start + 300]
            for row in self._read(self._sql("SELECT voucher_id, revision, agency, status, chain_sha256, summary FROM "
                                            f"intake WHERE voucher_id IN ({', '.join('?' for _ in chunk)})"),
                                  tuple(chunk)):
                if (row[0], row[1]) in wanted:
                    found[(row[0], row[1])] = VoucherHead(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))
        return found

    def revisions(self, voucher_id: str) -> list[IntakeRecord]:
        rows = self._read(self._sql(f"SELECT {INTAKE_COLUMNS} FROM intake WHERE voucher_id = ? ORDER BY revision"),
                          (voucher_id,))
        return [self._record(row) for row in rows]

    def list_for_agency(self, agency: str | None, *, status: str | None = None,
                        received_from: datetime.datetime | None = None,
                        received_to: datetime.datetime | None = None, after: str | None = None,
                        limit: int = 100) -> tuple[list[IntakeRecord], str | None]:
        check_limit(limit)
        where, params = ([], []) if agency is None else (["agency = ?"], [agency])
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
        rows = self._read(self._sql(f"SELECT {INTAKE_COLUMNS} FROM intake "
                                    f"{'WHERE ' + ' AND '.join(where) if where else ''} "
                                    "ORDER BY received_at, voucher_id, revision LIMIT ?"), (*params, limit + 1))
        records = [self._record(row) for row in rows[:limit]]
        return records, (encode_cursor(records[-1]) if len(rows) > limit else None)

    def actions(self, voucher_id: str, revision: int) -> list[ActionRecord]:
        rows = self._read(self._sql(f"SELECT {ACTION_COLUMNS} FROM actions WHERE voucher_id = ? AND revision = ? "
                                    "ORDER BY audit_seq"), (voucher_id, revision))
        return [self._action(row) for row in rows]

    def actions_at(self, voucher_id: str, revision: int, stage: str) -> ActionRecord | None:
        rows = self._read(self._sql(f"SELECT {ACTION_COLUMNS} FROM actions WHERE voucher_id = ? AND revision = ? "
                                    "AND stage = ?"), (voucher_id, revision, stage))
        return self._action(rows[0]) if rows else None

    def queue(self, status: str, *, agency: str | None = None, limit: int = 100,
              after: tuple[datetime.datetime, str, int] | None = None) -> list[IntakeRecord]:
        check_limit(limit)
        where, params = ["status = ?"], [status]
        if agency is not None:
            where.append("agency = ?")
            params.append(agency)
        if after is not None:
            where.append(f"(status_at, voucher_id, revision) > {self.cursor_tuple}")
            params += [self._time_param(after[0]), after[1], after[2]]
        rows = self._read(self._sql(f"SELECT {INTAKE_COLUMNS} FROM intake WHERE {' AND '.join(where)} "
                                    "ORDER BY status_at, voucher_id, revision LIMIT ?"), (*params, limit))
        return [self._record(row) for row in rows]

    def queue_counts(self, statuses: list[str], *, overdue_before: datetime.date) -> dict[str, tuple[int, int]]:
        marks = ", ".join("?" for _ in statuses)
        rows = self._read(self._sql(f"SELECT status, COUNT(*), SUM(CASE WHEN due_on < ? THEN 1 ELSE 0 END) "
                                    f"FROM intake WHERE status IN ({marks}) GROUP BY status"),
                          (self._date_param(overdue_before), *statuses))
        counts = {status: (0, 0) for status in statuses}
        counts.update({row[0]: (int(row[1]), int(row[2] or 0)) for row in rows})
        return counts

    def _date_param(self, day: datetime.date):
        """A date as the backend compares it (ISO text in SQLite, DATE in PostgreSQL)."""
        return day.isoformat()

    def history(self, subject: str) -> list[AuditEntry]:
        rows = self._read(self._sql(f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE subject = ? ORDER BY seq"),
                          (subject,))
        return [self._entry(row) for row in rows]

    def audit_entries(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        check_limit(limit)
        rows = self._read(self._sql(f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"),
                          (after_seq, limit))
        return [self._entry(row) for row in rows]

    # --- the event publisher's cursor (the audit log is its outbox) ------------------------------------------

    def event_cursor(self, name: str) -> int:
        rows = self._read(self._sql("SELECT seq FROM event_cursor WHERE name = ?"), (name,))
        return int(rows[0][0]) if rows else 0

    def advance_event_cursor(self, name: str, expected: int, seq: int) -> bool:
        """Two autocommitted statements, each atomic on its own: creating a missing row at 0 changes no
        reader's position, and the conditional UPDATE is the compare-and-set. The audit chain's lock is not
        taken (the cursor is no part of the chain); SQLite's write lock is, for that one statement."""
        check_cursor_move(name, expected, seq)
        try:
            conn = self._conn()
            if expected == 0:
                conn.execute(self._sql("INSERT INTO event_cursor (name, seq) VALUES (?, 0) "
                                       "ON CONFLICT (name) DO NOTHING"), (name,))
            moved = conn.execute(self._sql("UPDATE event_cursor SET seq = ? WHERE name = ? AND seq = ?"),
                                 (seq, name, expected)).rowcount
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} write failed: {exc}") from exc
        return moved == 1
