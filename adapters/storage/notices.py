"""Deposit notices in SQL (gateway/notices/store.py), shared by the SQLite and PostgreSQL stores.

A mixin of :class:`adapters.storage.sql.SqlStore`, like ``adapters.storage.bank.BankSql``. Two of its methods run inside
the bank exchange's transactions (a notice is written with its payment line, and armed or cancelled with
the line's booking or return), so neither can happen without the other. The rest are the worker's claims
and outcomes: a claim is a lease (token + expiry) taken in one transaction, with ``FOR UPDATE SKIP LOCKED``
on PostgreSQL so two gateway processes never take one row; SQLite's single write lock does the same there.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence

from gateway.bank.payments import LineState
from gateway.bank.store import BatchedPayment, LineChange
from gateway.business_time import TAIPEI
from gateway.notices.content import Channel, DepositNotice, NoticeState, NoticeTarget, Outcome
from gateway.notices.store import NoticeRow
from gateway.store import AuditEvent, StoreError
from gateway.vouchers.model import NoticeChannel

_ROW_COLUMNS = ("n.end_to_end_id, p.voucher_id, p.revision, p.line_number, p.agency, n.channel, n.address, "
                "n.state, n.attempts, n.next_attempt_at, n.last_error, n.message_id, n.booked_at, n.sent_at, n.changed_at")
_JOINED = "deposit_notices n JOIN payments p ON p.end_to_end_id = n.end_to_end_id"
_CHANNELS = {NoticeChannel.EMAIL: Channel.EMAIL.value, NoticeChannel.FAX: Channel.FAX.value,
             NoticeChannel.POST: Channel.POST.value}
_CLAIM_COLUMNS = ("n.end_to_end_id, p.voucher_id, p.revision, p.line_number, p.agency, n.channel, n.address, "
                  "n.post_code, n.purpose, p.payee_name, p.amount, p.payee_bank_code, p.payee_branch_code, "
                  "p.payee_account, p.paid_on, n.booked_at, n.attempts, n.claim, n.message_id")


class NoticeSql:
    """Deposit notice statements; expects the SqlStore helpers (_sql, _read, _conn, _chain_tx, _time_*)."""

    # --- inside the bank exchange's transactions ----------------------------------------------------------

    def _insert_notices(self, conn, payments: Sequence[BatchedPayment], stamp) -> None:
        """With ``record_batch``: one ``waiting`` row per line whose voucher line asked for a notice. The
        channel comes straight from the schema-valid voucher (the XSD checked the address's form)."""
        rows = [(p.end_to_end_id, _CHANNELS[p.notice.channel], p.notice.address, p.notice.post_code, p.remittance,
                 stamp)
                for p in (b.payment for b in payments) if p.notice is not None]
        if rows:
            conn.cursor().executemany(self._sql(
                "INSERT INTO deposit_notices (end_to_end_id, channel, address, post_code, purpose, state, changed_at) "
                "VALUES (?, ?, ?, ?, ?, 'waiting', ?)"), rows)

    def _book_notices(self, conn, lines: Sequence[LineChange], stamp) -> None:
        """With ``record_report``: a line booked (paid) arms its notice, due at once; a line returned (退匯)
        before its notice left cancels it, leased (in flight) or not: a sender that then gets a 4xx or dies
        must not send it later (a payee is never told of money that came back). Only a mail the server
        really accepted is recorded ``sent`` over the cancel, since that is the truth about what left; every
        other outcome leaves the row cancelled (record_notice_outcome). One UPDATE per 500 lines: a report
        books up to 5,000, and a statement each cost the bank day's acknowledgements."""
        paid = [c.end_to_end_id for c in lines if c.new is LineState.PAID]
        returned = [c.end_to_end_id for c in lines if c.new is LineState.RETURNED]
        for start in range(0, len(paid), 500):
            chunk = paid[start:start + 500]
            conn.execute(self._sql(
                "UPDATE deposit_notices SET state = 'pending', booked_at = ?, next_attempt_at = ?, changed_at = ? "
                f"WHERE state = 'waiting' AND end_to_end_id IN ({', '.join('?' for _ in chunk)})"),
                (stamp, stamp, stamp, *chunk))
        for start in range(0, len(returned), 500):
            chunk = returned[start:start + 500]
            conn.execute(self._sql(
                "UPDATE deposit_notices SET state = 'cancelled', next_attempt_at = NULL, changed_at = ?, "
                "last_error = 'the payment was returned (退匯) before the notice was sent' "
                f"WHERE end_to_end_id IN ({', '.join('?' for _ in chunk)}) AND state IN ('waiting', 'pending')"),
                (stamp, *chunk))

    # --- the worker -------------------------------------------------------------------------------------------

    def claim_notices(self, now: datetime.datetime, *, lease: datetime.timedelta, limit: int = 50,
                      channels: tuple[Channel, ...] = (Channel.EMAIL, Channel.FAX),
                      paid_until: datetime.date | None = None) -> list[DepositNotice]:
        token = uuid.uuid4().hex
        at = self._time_param(now)
        kinds = ", ".join("?" for _ in channels)
        paid, paid_params = ("", ()) if paid_until is None else (" AND p.paid_on <= ?", (paid_until.isoformat(),))
        skip = " FOR UPDATE OF n SKIP LOCKED" if self.dialect == "postgresql" else ""
        try:
            with self._plain_tx() as conn:
                conn.execute(self._sql(
                    "UPDATE deposit_notices SET attempts = attempts + 1, claim = ?, lease_until = ?, changed_at = ? "
                    "WHERE end_to_end_id IN (SELECT n.end_to_end_id FROM deposit_notices n JOIN payments p ON "
                    "p.end_to_end_id = n.end_to_end_id WHERE n.state = 'pending' AND p.state = 'paid' AND "
                    "n.next_attempt_at <= ? AND "
                    f"(n.lease_until IS NULL OR n.lease_until < ?) AND n.channel IN ({kinds}){paid} "
                    f"ORDER BY n.next_attempt_at, n.end_to_end_id LIMIT ?{skip})"),
                    (token, self._time_param(now + lease), at, at, at, *(c.value for c in channels), *paid_params,
                     limit))
                rows = conn.execute(self._sql(
                    f"SELECT {_CLAIM_COLUMNS} FROM deposit_notices n JOIN payments p ON p.end_to_end_id = "
                    "n.end_to_end_id WHERE n.claim = ? ORDER BY n.end_to_end_id"), (token,)).fetchall()
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} could not claim deposit notices: {exc}") from exc
        return [self._claimed(r) for r in rows]

    def _claimed(self, r) -> DepositNotice:
        booked = self._time_value(r[15]) if r[15] is not None else None
        paid_on = (datetime.date.fromisoformat(r[14]) if r[14] else
                   (booked or datetime.datetime.now(datetime.timezone.utc)).astimezone(TAIPEI).date())
        return DepositNotice(r[0], r[1], r[2], r[3], r[4], NoticeTarget(Channel(r[5]), r[6], r[7]), r[8], r[9],
                             int(r[10]), r[11], r[12], r[13], paid_on, r[16], r[17], r[18])

    def note_message_ids(self, pairs: list[tuple[DepositNotice, str]]) -> None:
        if not pairs:
            return
        try:
            with self._plain_tx() as conn:
                conn.cursor().executemany(self._sql(
                    "UPDATE deposit_notices SET message_id = ? WHERE end_to_end_id = ? AND claim = ?"),
                    [(mid, n.end_to_end_id, n.claim) for n, mid in pairs])
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} could not note message ids: {exc}") from exc

    def record_notice_outcome(self, notice: DepositNotice, outcome: Outcome, *, message_id: str | None,
                              event: AuditEvent | None) -> bool:
        at = self._time_param(event.at if event is not None else datetime.datetime.now(datetime.timezone.utc))
        # a row cancelled meanwhile (the payment returned while the notice was in flight) stays cancelled,
        # so it is never claimed again; only ``sent`` overrides it, because that mail did leave
        if outcome.state is NoticeState.SENT:
            state, params = "?", (outcome.state.value,)
        else:
            state, params = "CASE WHEN state = 'cancelled' THEN 'cancelled' ELSE ? END", (outcome.state.value,)
        statement = self._sql(
            f"UPDATE deposit_notices SET state = {state}, next_attempt_at = ?, last_error = ?, "
            "message_id = COALESCE(?, message_id), sent_at = COALESCE(?, sent_at), lease_until = NULL, claim = NULL, "
            "changed_at = ? WHERE end_to_end_id = ? AND claim = ?")
        values = (*params, self._time_param(outcome.next_attempt_at) if outcome.next_attempt_at else None,
                  outcome.last_error, message_id, self._time_param(outcome.sent_at) if outcome.sent_at else None,
                  at, notice.end_to_end_id, notice.claim)
        try:
            if event is None:
                with self._plain_tx() as conn:
                    return conn.execute(statement, values).rowcount == 1
            with self._chain_tx() as (conn, append):
                if conn.execute(statement, values).rowcount != 1:
                    return False
                append(event)
                return True
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} could not record the notice of {notice.end_to_end_id}: {exc}") from exc

    # --- reads ----------------------------------------------------------------------------------------------

    def _notice_row(self, r) -> NoticeRow:
        def t(value):
            return self._time_value(value) if value is not None else None
        return NoticeRow(r[0], r[1], r[2], r[3], r[4], Channel(r[5]), r[6], NoticeState(r[7]), r[8], t(r[9]), r[10],
                         r[11], t(r[12]), t(r[13]), self._time_value(r[14]))

    def notices_of(self, voucher_id: str, revision: int) -> list[NoticeRow]:
        rows = self._read(self._sql(f"SELECT {_ROW_COLUMNS} FROM {_JOINED} WHERE p.voucher_id = ? AND "
                                    "p.revision = ? ORDER BY p.line_number"), (voucher_id, revision))
        return [self._notice_row(r) for r in rows]

    def notice_rows(self, *, state: NoticeState | None = None, after: str | None = None,
                    limit: int = 100) -> list[NoticeRow]:
        where, params = "n.end_to_end_id > ?", [after or ""]
        if state is not None:
            where += " AND n.state = ?"
            params.append(state.value)
            if state in (NoticeState.BOUNCED, NoticeState.FAILED):
                # the partial index's own condition, word for word: SQLite uses a partial index only when the
                # query repeats it (it does not infer it from the equality)
                where += " AND n.state IN ('bounced', 'failed')"
        rows = self._read(self._sql(f"SELECT {_ROW_COLUMNS} FROM {_JOINED} WHERE {where} "
                                    "ORDER BY n.end_to_end_id LIMIT ?"), (*params, limit))
        return [self._notice_row(r) for r in rows]

    def notice_counts(self) -> dict[tuple[str, str], int]:
        return {(channel, state): int(n) for channel, state, n in self._read(
            "SELECT channel, state, COUNT(*) FROM deposit_notices GROUP BY channel, state")}

