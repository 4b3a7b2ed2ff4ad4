"""The bank exchange in SQL (gateway/bank/store.py), shared by the SQLite and PostgreSQL stores.

A mixin of :class:`adapters.storage.sql.SqlStore`. Its writes run inside the audit chain's transaction
(``_chain_tx``), so a batch, its outbox rows and its audit events, or a report and everything it moves,
commit together or not at all. Line changes are compare-and-sets on the line's state, and money moves are
aggregated per budget key into one conditional UPDATE each, under the allotments' CHECK constraint.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections import defaultdict

from gateway.bank.payments import LineState
from gateway.bank.store import (
    BankMessageRecord,
    BatchWrite,
    LineChanged,
    LineStatus,
    PaymentRow,
    ReportAlreadyStored,
    ReportWrite,
    SentMessage,
    UnansweredMessage,
)
from gateway.business_time import TAIPEI
from gateway.statements.lines import StatementLine
from gateway.store import StoreError

_MESSAGE_COLUMNS = ("direction, message_id, message_type, routing, body, sha256, payment_count, control_sum, "
                    "created_at, sent_at")
_PAYMENT_COLUMNS = ("end_to_end_id, voucher_id, revision, line_number, agency, fiscal_year, budget_subject, amount, "
                    "message_id, payment_info_id, state, reason_code, reason_text, bank_reference, booked_on, "
                    "created_at, changed_at, unconfirmed_at")
_INSERT_COLUMNS = (_PAYMENT_COLUMNS + ", payee_name, payee_bank_code, payee_branch_code, payee_account, "
                   "statement_on")
_STATEMENT_COLUMNS = ("voucher_id, revision, line_number, end_to_end_id, payee_name, payee_bank_code, "
                      "payee_branch_code, payee_account, amount, state, reason_code, reason_text, bank_reference, "
                      "message_id, booked_on, paid_on, statement_on")
_STATES = {state.value: state for state in LineState}

# What each money move does to an allotment: (column taken from, column given to or None).
_MONEY = {"consume": ("reserved", "consumed"), "free-reserved": ("reserved", None), "free-consumed": ("consumed", None)}
_TURN_CREATION = threading.Lock()
"""Held while a store makes its relay turn (adapters/storage/relay_turn.py), once."""


def _day(value: datetime.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _marks(columns: str) -> str:
    return ", ".join("?" for _ in columns.split(","))


def _date(value: str | None) -> datetime.date | None:
    return datetime.date.fromisoformat(value) if value else None


class BankSql:
    """Bank exchange statements; expects the SqlStore helpers (_sql, _read, _chain_tx, _change_statuses, …)."""

    def _message(self, row) -> BankMessageRecord:
        return BankMessageRecord(row[0], row[1], row[2], row[3], bytes(row[4]), row[5], row[6], row[7],
                                 self._time_value(row[8]), self._time_value(row[9]) if row[9] is not None else None)

    def _payment(self, row) -> PaymentRow:
        return PaymentRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
                          LineState(row[10]), row[11], row[12], row[13],
                          datetime.date.fromisoformat(row[14]) if row[14] else None,
                          self._time_value(row[15]), self._time_value(row[16]),
                          self._time_value(row[17]) if row[17] is not None else None)

    def _insert_message(self, conn, message: BankMessageRecord) -> None:
        conn.execute(self._sql(f"INSERT INTO bank_messages ({_MESSAGE_COLUMNS}) VALUES ({_marks(_MESSAGE_COLUMNS)})"),
                     (message.direction, message.message_id, message.message_type, message.routing, message.body,
                      message.sha256, message.payment_count, message.control_sum,
                      self._time_param(message.created_at),
                      self._time_param(message.sent_at) if message.sent_at else None))

    # --- writes --------------------------------------------------------------------------------------------

    def record_batch(self, write: BatchWrite) -> None:
        at = write.messages[0].created_at
        try:
            with self._chain_tx() as (conn, append):
                self._change_statuses(conn, write.changes)
                cursor = conn.cursor()
                cursor.executemany(self._sql("UPDATE reservations SET state = 'batched', changed_at = ? "
                                             "WHERE voucher_id = ? AND revision = ? AND state = 'reserved'"),
                                   [(self._time_param(at), c.voucher_id, c.revision) for c in write.changes])
                if cursor.rowcount != len(write.changes):
                    raise StoreError(f"budget-reservation-unknown: {len(write.changes) - cursor.rowcount} batched "
                                     "revision(s) have no reservation")
                for message in write.messages:
                    self._insert_message(conn, message)
                stamp = self._time_param(at)
                # The payee goes into the row too (v0008), so a statement needs no voucher parsed.
                statement_on = at.astimezone(TAIPEI).date().isoformat()
                conn.cursor().executemany(
                    self._sql(f"INSERT INTO payments ({_INSERT_COLUMNS}) VALUES ({_marks(_INSERT_COLUMNS)})"),
                    [(b.payment.end_to_end_id, b.payment.voucher_id, b.payment.revision, b.payment.line_number,
                      b.payment.agency, b.fiscal_year, b.budget_subject, b.payment.amount, b.message_id,
                      b.payment_info_id, LineState.PENDING.value, None, None, None, None, stamp, stamp, None,
                      b.payment.payee_name, b.payment.bank_code, b.payment.branch_code, b.payment.account_number,
                      statement_on)
                     for b in write.payments])
                self._insert_notices(conn, write.payments, stamp)  # adapters/storage/notices.py (v0009)
                for event in write.events:
                    append(event)
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} could not record the batch: {exc}") from exc

    def mark_sent(self, message_id: str, at: datetime.datetime) -> bool:
        try:
            with self._chain_tx() as (conn, _append):
                return conn.execute(self._sql("UPDATE bank_messages SET sent_at = ? WHERE direction = 'out' AND "
                                              "message_id = ? AND sent_at IS NULL"),
                                    (self._time_param(at), message_id)).rowcount == 1
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} could not mark {message_id} sent: {exc}") from exc

    def record_report(self, write: ReportWrite) -> None:
        report = write.report
        try:
            with self._chain_tx() as (conn, append):
                row = conn.execute(self._sql("SELECT sha256 FROM bank_messages WHERE direction = 'in' AND "
                                             "message_id = ?"), (report.message_id,)).fetchone()
                if row is not None:
                    raise ReportAlreadyStored(report.message_id, row[0] == report.sha256)
                self._insert_message(conn, report)
                self._change_lines(conn, write)
                for event in write.events:
                    append(event)
        except self.unique_violation:
            raise ReportAlreadyStored(report.message_id, False) from None
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} could not record report {report.message_id}: {exc}") from exc

    def _change_lines(self, conn, write: ReportWrite) -> None:
        if not write.lines:
            return
        stamp = self._time_param(write.at)
        today = write.at.astimezone(TAIPEI).date().isoformat()
        cursor = conn.cursor()
        # statement_on: the booking date (new, else the one stored), else — when the state changes — the Taipei
        # date of this change, else (facts filled in) as it was; paid_on: the booking date of a paid line once
        # known, else the Taipei date it was reported paid, and kept if it is returned later (v0008). The
        # compare-and-set covers the booking date too: a fill-in raced by another report is decided again.
        cursor.executemany(self._sql(
            "UPDATE payments SET state = ?, reason_code = COALESCE(?, reason_code), "
            "reason_text = COALESCE(?, reason_text), bank_reference = COALESCE(?, bank_reference), "
            "booked_on = COALESCE(?, booked_on), statement_on = COALESCE(?, booked_on, ?, statement_on), "
            "paid_on = COALESCE(?, paid_on, ?), changed_at = ? "
            "WHERE end_to_end_id = ? AND state = ? AND COALESCE(booked_on, '') = ?"),
            [(c.new.value, c.reason_code, c.reason_text, c.bank_reference, _day(c.booked_on), _day(c.booked_on),
              None if c.fills_in else today, _day(c.booked_on) if c.new is LineState.PAID else None,
              today if c.new is LineState.PAID else None, stamp, c.end_to_end_id, c.expected.value,
              _day(c.expected_booked_on) or "")
             for c in write.lines])
        if cursor.rowcount != len(write.lines):
            raise LineChanged(f"{len(write.lines) - cursor.rowcount} of the report's lines moved meanwhile")
        moved = [c for c in write.lines if not c.fills_in]
        self._book_notices(conn, moved, stamp)  # deposit notices armed or cancelled (adapters/storage/notices.py)
        totals: dict[tuple, int] = defaultdict(int)
        moving = [c for c in write.lines if c.money]
        keys = self._budget_keys(conn, [c.end_to_end_id for c in moving])
        for change in moving:
            amount, key = keys[change.end_to_end_id]
            totals[(change.money, *key)] += amount
        for (money, *key), amount in sorted(totals.items()):
            source, target = _MONEY[money]
            give = f", {target} = {target} + ?" if target else ""
            params = (amount, amount) if target else (amount,)
            moved = conn.execute(self._sql(
                f"UPDATE allotments SET {source} = {source} - ?{give}, updated_at = ? "
                f"WHERE agency = ? AND fiscal_year = ? AND budget_subject = ? AND {source} >= ?"),
                (*params, stamp, *key, amount)).rowcount
            if moved != 1:
                raise StoreError(f"budget-inconsistent: cannot {money} NT$ {amount:,} on {'/'.join(map(str, key))}")

    def _budget_keys(self, conn, ids: list[str]) -> dict[str, tuple[int, tuple]]:
        found = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = conn.execute(self._sql(f"SELECT end_to_end_id, amount, agency, fiscal_year, budget_subject FROM "
                                          f"payments WHERE end_to_end_id IN ({', '.join('?' for _ in chunk)})"),
                                tuple(chunk)).fetchall()
            found.update({r[0]: (r[1], (r[2], r[3], r[4])) for r in rows})
        return found

    def mark_unsent(self, message_id: str, event, *, sent_before: datetime.datetime | None = None) -> bool:
        """Have the relay publish a sent transfer message again (the bank says it never got it, or the worker
        found it unanswered), count the re-send and append its audit event, in one transaction; False, changing
        nothing, if it is not a sent outbound message or (``sent_before``) was sent again since."""
        since, params = ("", (message_id,)) if sent_before is None else (
            " AND sent_at < ?", (message_id, self._time_param(sent_before)))
        try:
            with self._chain_tx() as (conn, append):
                moved = conn.execute(self._sql("UPDATE bank_messages SET sent_at = NULL, resends = resends + 1 "
                                               "WHERE direction = 'out' AND message_id = ? AND sent_at IS NOT NULL"
                                               + since), params).rowcount
                if moved != 1:
                    return False
                append(event)
                return True
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} could not mark {message_id} for sending again: {exc}") from exc

    def flag_unconfirmed(self, before: datetime.datetime, at: datetime.datetime) -> int:
        try:
            with self._chain_tx() as (conn, _append):
                return conn.execute(self._sql(
                    "UPDATE payments SET unconfirmed_at = ? WHERE state IN ('pending', 'accepted') AND "
                    "created_at < ? AND unconfirmed_at IS NULL"),
                    (self._time_param(at), self._time_param(before))).rowcount
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} could not flag unconfirmed payments: {exc}") from exc

    def relay_turn(self) -> bool:
        """True while this process holds the outbox relay's turn on this store (adapters/storage/relay_turn.py)."""
        turn = self.__dict__.get("_relay_turn")
        if turn is None:
            from adapters.storage.relay_turn import FileRelayTurn, PostgresRelayTurn

            with _TURN_CREATION:  # two first pumps at once must not make two turns (the orphan would hold on)
                turn = self.__dict__.get("_relay_turn")
                if turn is None:
                    turn = PostgresRelayTurn(self._url) if self.dialect == "postgresql" else FileRelayTurn(self._path)
                    self._relay_turn = turn
        return turn.held()

    # --- reads ---------------------------------------------------------------------------------------------

    def unsent_messages(self, limit: int = 100) -> list[BankMessageRecord]:
        rows = self._read(self._sql(f"SELECT {_MESSAGE_COLUMNS} FROM bank_messages WHERE direction = 'out' AND "
                                    "sent_at IS NULL ORDER BY created_at, message_id LIMIT ?"), (limit,))
        return [self._message(r) for r in rows]

    def unanswered_messages(self, sent_before: datetime.datetime, *, max_resends: int | None = None,
                            limit: int = 100) -> list[UnansweredMessage]:
        """Sent transfer messages with open lines, oldest send first. Driven from the open lines (the partial
        index payments_open_by_message, v0007), which are few, never from every message ever sent."""
        capped, params = ("", (self._time_param(sent_before), limit)) if max_resends is None else (
            " AND m.resends < ?", (self._time_param(sent_before), max_resends, limit))
        rows = self._read(self._sql(
            "SELECT m.message_id, m.sha256, m.sent_at, m.payment_count, o.open_lines, m.resends FROM "
            "(SELECT message_id, COUNT(*) AS open_lines FROM payments WHERE state IN ('pending', 'accepted') "
            "GROUP BY message_id) o JOIN bank_messages m ON m.direction = 'out' AND m.message_id = o.message_id "
            f"WHERE m.sent_at < ?{capped} ORDER BY m.sent_at, m.message_id LIMIT ?"), params)
        return [UnansweredMessage(r[0], r[1], self._time_value(r[2]), r[3], r[4], r[5]) for r in rows]

    def bank_message(self, direction: str, message_id: str) -> BankMessageRecord | None:
        rows = self._read(self._sql(f"SELECT {_MESSAGE_COLUMNS} FROM bank_messages WHERE direction = ? AND "
                                    "message_id = ?"), (direction, message_id))
        return self._message(rows[0]) if rows else None

    def bank_messages(self, direction: str, *, after: str | None = None, limit: int = 100) -> list[BankMessageRecord]:
        rows = self._read(self._sql(f"SELECT {_MESSAGE_COLUMNS} FROM bank_messages WHERE direction = ? AND "
                                    "message_id > ? ORDER BY message_id LIMIT ?"), (direction, after or "", limit))
        return [self._message(r) for r in rows]

    def sent_message(self, message_id: str) -> SentMessage | None:
        rows = self._read(self._sql("SELECT message_id, message_type, payment_count, control_sum, created_at FROM "
                                    "bank_messages WHERE direction = 'out' AND message_id = ?"), (message_id,))
        if not rows:
            return None
        blocks = self._read(self._sql("SELECT payment_info_id, COUNT(*), SUM(amount) FROM payments WHERE "
                                      "message_id = ? GROUP BY payment_info_id"), (message_id,))
        row = rows[0]
        return SentMessage(row[0], row[1], int(row[2]), int(row[3]), self._time_value(row[4]),
                           {b[0]: (int(b[1]), int(b[2])) for b in blocks})

    def payments_by_ids(self, end_to_end_ids: list[str]) -> dict[str, PaymentRow]:
        found: dict[str, PaymentRow] = {}
        for start in range(0, len(end_to_end_ids), 500):
            chunk = end_to_end_ids[start:start + 500]
            rows = self._read(self._sql(f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE end_to_end_id IN "
                                        f"({', '.join('?' for _ in chunk)})"), tuple(chunk))
            found.update({r[0]: self._payment(r) for r in rows})
        return found

    def payments_of_message(self, message_id: str, payment_info_id: str | None = None) -> list[PaymentRow]:
        where, params = ("message_id = ?", (message_id,)) if payment_info_id is None else (
            "message_id = ? AND payment_info_id = ?", (message_id, payment_info_id))
        rows = self._read(self._sql(f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE {where} ORDER BY end_to_end_id"),
                          params)
        return [self._payment(r) for r in rows]

    def payments_of(self, voucher_id: str, revision: int) -> list[PaymentRow]:
        rows = self._read(self._sql(f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE voucher_id = ? AND revision = ? "
                                    "ORDER BY line_number"), (voucher_id, revision))
        return [self._payment(r) for r in rows]

    def statement_lines(self, agency: str, start: datetime.date, end: datetime.date) -> list[StatementLine]:
        """The agency's lines paid, or last changed (statement_on), on a day of [start, end] (gateway/statements/lines.py),
        through the indexes payments_by_agency_paid and payments_by_agency_statement (v0008)."""
        first, last = start.isoformat(), end.isoformat()
        rows = self._read(self._sql(
            f"SELECT {_STATEMENT_COLUMNS} FROM payments WHERE agency = ? AND statement_on BETWEEN ? AND ? "
            f"UNION SELECT {_STATEMENT_COLUMNS} FROM payments WHERE agency = ? AND paid_on IS NOT NULL AND "
            "paid_on BETWEEN ? AND ?"), (agency, first, last, agency, first, last))
        return [StatementLine(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], int(r[8]), LineState(r[9]), r[10],
                              r[11], r[12], r[13], _date(r[14]), _date(r[15]), datetime.date.fromisoformat(r[16]))
                for r in rows]

    def paid_before(self, agency: str, start: datetime.date) -> int:
        """Whole NT$ the agency had paid before ``start``, net of returns after payment before it: a
        statement's opening total (gateway/statements/lines.py ``opening_total`` is the definition)."""
        first = start.isoformat()
        paid, returned = self._read(self._sql(
            "SELECT (SELECT COALESCE(SUM(amount), 0) FROM payments WHERE agency = ? AND paid_on IS NOT NULL AND "
            "paid_on < ?), (SELECT COALESCE(SUM(amount), 0) FROM payments WHERE agency = ? AND "
            "statement_on < ? AND state = 'returned' AND paid_on IS NOT NULL)"), (agency, first, agency, first))[0]
        return int(paid) - int(returned)

    def line_states(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], list[LineStatus]]:
        """Where each line of each revision in ``keys`` stands, by line number: what settling needs, read
        without building whole rows (a report settles hundreds of vouchers)."""
        found: dict[tuple[str, int], list[LineStatus]] = defaultdict(list)
        wanted = set(keys)
        voucher_ids = sorted({voucher_id for voucher_id, _ in keys})
        for start in range(0, len(voucher_ids), 300):
            chunk = voucher_ids[start:start + 300]
            for voucher_id, revision, line, state, reason in self._read(self._sql(
                    "SELECT voucher_id, revision, line_number, state, reason_code FROM payments WHERE voucher_id IN "
                    f"({', '.join('?' for _ in chunk)}) ORDER BY voucher_id, revision, line_number"), tuple(chunk)):
                if (voucher_id, revision) in wanted:
                    found[(voucher_id, revision)].append(LineStatus(line, _STATES[state], reason))
        return dict(found)

    def payments_of_many(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], list[PaymentRow]]:
        """Every line of each revision in ``keys``, by line number; one query per 300 revisions."""
        found: dict[tuple[str, int], list[PaymentRow]] = defaultdict(list)
        voucher_ids = sorted({voucher_id for voucher_id, _ in keys})
        wanted = set(keys)
        for start in range(0, len(voucher_ids), 300):
            chunk = voucher_ids[start:start + 300]
            rows = self._read(self._sql(f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE voucher_id IN "
                                        f"({', '.join('?' for _ in chunk)}) ORDER BY voucher_id, revision, "
                                        "line_number"), tuple(chunk))
            for row in rows:
                if (row[1], row[2]) in wanted:
                    found[(row[1], row[2])].append(self._payment(row))
        return dict(found)

    def bank_totals(self) -> dict:
        """The figures reconciliation compares, each read straight from the tables."""
        by_state = {state: (int(count), int(total)) for state, count, total in self._read(
            "SELECT state, COUNT(*), COALESCE(SUM(amount), 0) FROM payments GROUP BY state")}
        sent = self._read("SELECT COUNT(*), COALESCE(SUM(payment_count), 0), COALESCE(SUM(control_sum), 0) "
                          "FROM bank_messages WHERE direction = 'out'")[0]
        unsent = self._read("SELECT COUNT(*) FROM bank_messages WHERE direction = 'out' AND sent_at IS NULL")[0][0]
        unconfirmed = self._read("SELECT COUNT(*) FROM payments WHERE unconfirmed_at IS NOT NULL AND "
                                 "state IN ('pending', 'accepted')")[0][0]
        return {"payments_by_state": by_state, "messages_out": sent[0], "message_payments": sent[1],
                "message_control_sum": sent[2], "messages_unsent": unsent, "unconfirmed": unconfirmed}

    def reconciliation_facts(self):
        """The figures of gateway/reconciliation.py, read from the tables and the signed message bodies."""
        from lxml import etree

        from gateway.reconciliation import AllotmentFacts, ReconciliationFacts, VoucherFacts
        from gateway.xmlsec.parsing import hardened_parser

        # PostgreSQL's SUM of a bigint is a numeric (a Decimal here): money is read back as int everywhere
        lines = {(r[0], r[1]): (int(r[2]), int(r[3]), frozenset(r[4].split(","))) for r in self._read(
            "SELECT voucher_id, revision, COUNT(*), SUM(amount), " + self._group_concat("state") +
            " FROM payments GROUP BY voucher_id, revision")}
        vouchers = []
        for voucher_id, revision, status, summary in self._read(
                "SELECT voucher_id, revision, status, summary FROM intake WHERE status IN ('batched', 'paid', 'returned')"):
            data = json.loads(summary)
            count, total, states = lines.get((voucher_id, revision), (0, 0, frozenset()))
            vouchers.append(VoucherFacts(voucher_id, revision, status, data["control_total"], data["line_count"],
                                         total, count, states))
        by_state = {state: (int(count), int(total)) for state, count, total in self._read(
            "SELECT state, COUNT(*), COALESCE(SUM(amount), 0) FROM payments GROUP BY state")}
        count, payments, control = (int(v) for v in self._read(
            "SELECT COUNT(*), COALESCE(SUM(payment_count), 0), COALESCE(SUM(control_sum), 0) FROM bank_messages "
            "WHERE direction = 'out'")[0])
        placed = {r[0]: r[1] for r in self._read("SELECT end_to_end_id, message_id FROM payments")}
        seen: dict[str, int] = {}
        misplaced = []
        after = ""
        while page := self.bank_messages("out", after=after, limit=20):
            for message in page:
                root = etree.fromstring(message.body, hardened_parser())
                for node in root.iter("{*}EndToEndId"):
                    seen[node.text] = seen.get(node.text, 0) + 1
                    if placed.get(node.text) != message.message_id:
                        misplaced.append(node.text)
            after = page[-1].message_id
        allotments = []
        for agency, year, subject, reserved, consumed, held, spent, open_lines, paid in self._read(
                "SELECT a.agency, a.fiscal_year, a.budget_subject, a.reserved, a.consumed, "
                "COALESCE((SELECT SUM(amount) FROM reservations r WHERE r.agency = a.agency AND "
                "r.fiscal_year = a.fiscal_year AND r.budget_subject = a.budget_subject AND r.state = 'reserved'), 0), "
                "COALESCE((SELECT SUM(amount) FROM reservations r WHERE r.agency = a.agency AND "
                "r.fiscal_year = a.fiscal_year AND r.budget_subject = a.budget_subject AND r.state = 'consumed'), 0), "
                "COALESCE((SELECT SUM(amount) FROM payments p WHERE p.agency = a.agency AND "
                "p.fiscal_year = a.fiscal_year AND p.budget_subject = a.budget_subject "
                "AND p.state IN ('pending', 'accepted')), 0), "
                "COALESCE((SELECT SUM(amount) FROM payments p WHERE p.agency = a.agency AND "
                "p.fiscal_year = a.fiscal_year AND p.budget_subject = a.budget_subject AND p.state = 'paid'), 0) "
                "FROM allotments a ORDER BY a.agency, a.fiscal_year, a.budget_subject"):
            allotments.append(AllotmentFacts(f"{agency}/{year}/{subject}", *(int(v) for v in (
                reserved, consumed, held, spent, open_lines, paid))))
        return ReconciliationFacts(tuple(vouchers), by_state, count, payments, control, seen, tuple(sorted(misplaced)),
                                   tuple(allotments))

    def _group_concat(self, column: str) -> str:
        return f"string_agg(DISTINCT {column}, ',')" if self.dialect == "postgresql" else f"group_concat(DISTINCT {column})"
