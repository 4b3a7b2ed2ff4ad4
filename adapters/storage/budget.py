"""The treasury's money and the duplicate guard's index in SQL, shared by the SQLite and PostgreSQL stores.

A mixin of :class:`adapters.storage.sql.SqlStore`: the same statements run on both backends (placeholders are
rewritten by ``_sql``). The safety of the money does not rest on the caller's snapshot: a reservation is a
conditional UPDATE that takes the amount only if it still fits, the table's CHECK refuses any row with a
negative or over-committed balance, and every operation runs inside the workflow write's transaction.
"""

from __future__ import annotations

import datetime

from gateway.errors import Problem, Refusal
from gateway.store import AuditEvent, BudgetChanged, BudgetOp, PayeeEntry, StoreError
from gateway.treasury.budget import ALLOTMENT_TOO_LOW, Allotment, BudgetBalance, BudgetKey

_KEY = "agency = ? AND fiscal_year = ? AND budget_subject = ?"


class BudgetSql:
    """Budget and payee-index statements; expects the SqlStore helpers (_sql, _read, _chain_tx, …)."""

    # --- inside a workflow write --------------------------------------------------------------------------

    def _apply_budget(self, conn, op: BudgetOp, at: datetime.datetime) -> None:
        key = (op.agency, op.fiscal_year, op.budget_subject)
        if op.kind == "reserve":
            taken = conn.execute(self._sql(f"UPDATE allotments SET reserved = reserved + ?, updated_at = ? WHERE {_KEY} "
                                           "AND allotted - reserved - consumed >= ?"),
                                 (op.amount, self._time_param(at), *key, op.amount)).rowcount
            if taken != 1:
                raise BudgetChanged(f"NT$ {op.amount:,} no longer fits the allotment {BudgetKey(*key)}")
            conn.execute(self._sql("INSERT INTO reservations (voucher_id, revision, agency, fiscal_year, budget_subject, "
                                   "amount, state, changed_at) VALUES (?, ?, ?, ?, ?, ?, 'reserved', ?)"),
                         (op.voucher_id, op.revision, *key, op.amount, self._time_param(at)))
            return
        row = conn.execute(self._sql("SELECT state, amount FROM reservations WHERE voucher_id = ? AND revision = ?"),
                           (op.voucher_id, op.revision)).fetchone()
        if row is None or row[0] == "released" or (op.kind == "consume" and row[0] != "reserved"):
            raise StoreError(f"budget-reservation-unknown: {op.voucher_id}#{op.revision} has no reservation to "
                             f"{op.kind} (found {row[0] if row else 'none'})")
        state, amount = row
        if op.kind == "consume":
            change, new_state = "reserved = reserved - ?, consumed = consumed + ?", "consumed"
            params: tuple = (amount, amount)
        else:
            column = "reserved" if state == "reserved" else "consumed"
            change, new_state, params = f"{column} = {column} - ?", "released", (amount,)
        conn.execute(self._sql(f"UPDATE allotments SET {change}, updated_at = ? WHERE {_KEY}"),
                     (*params, self._time_param(at), *key))
        conn.execute(self._sql("UPDATE reservations SET state = ?, changed_at = ? WHERE voucher_id = ? AND revision = ?"),
                     (new_state, self._time_param(at), op.voucher_id, op.revision))

    def _index_payees(self, conn, entries: tuple[PayeeEntry, ...], at: datetime.datetime) -> None:
        for entry in entries:
            conn.execute(self._sql("INSERT INTO payee_index (voucher_id, revision, line_number, payee_key, indexed_at) "
                                   "VALUES (?, ?, ?, ?, ?)"),
                         (entry.voucher_id, entry.revision, entry.line_number, entry.payee_key, self._time_param(at)))

    # --- the port -------------------------------------------------------------------------------------------

    def load_allotments(self, allotments: list[Allotment], event: AuditEvent) -> None:
        try:
            with self._chain_tx() as (conn, append):
                problems = []
                for allotment in allotments:
                    key = (allotment.agency, allotment.fiscal_year, allotment.budget_subject)
                    row = conn.execute(self._sql(f"SELECT reserved + consumed FROM allotments WHERE {_KEY}"),
                                       key).fetchone()
                    if row is None:
                        conn.execute(self._sql("INSERT INTO allotments (agency, fiscal_year, budget_subject, allotted, "
                                               "updated_at) VALUES (?, ?, ?, ?, ?)"),
                                     (*key, allotment.amount, self._time_param(event.at)))
                    elif allotment.amount < row[0]:
                        problems.append(Problem(ALLOTMENT_TOO_LOW, f"{allotment.key}: NT$ {allotment.amount:,} is below "
                                                f"the NT$ {row[0]:,} already reserved or paid", line=allotment.line))
                    else:
                        conn.execute(self._sql(f"UPDATE allotments SET allotted = ?, updated_at = ? WHERE {_KEY}"),
                                     (allotment.amount, self._time_param(event.at), *key))
                if problems:
                    raise Refusal(problems)
                append(event)
        except self.driver_error as exc:
            raise StoreError(f"{self.dialect} could not load the allotments: {exc}") from exc

    def budget_balance(self, key: BudgetKey) -> BudgetBalance | None:
        rows = self._read(self._sql(f"SELECT allotted, reserved, consumed FROM allotments WHERE {_KEY}"), tuple(key))
        return BudgetBalance(*rows[0]) if rows else None

    def budget_balances(self, agency: str | None = None) -> list[tuple[BudgetKey, BudgetBalance]]:
        where, params = ("WHERE agency = ?", (agency,)) if agency else ("", ())
        rows = self._read(self._sql(f"SELECT agency, fiscal_year, budget_subject, allotted, reserved, consumed "
                                    f"FROM allotments {where} ORDER BY agency, fiscal_year, budget_subject"), params)
        return [(BudgetKey(r[0], r[1], r[2]), BudgetBalance(r[3], r[4], r[5])) for r in rows]

    def earlier_payments(self, payee_keys: list[str], *, since: datetime.datetime,
                         exclude_voucher: str, exclude_revision: int | None = None
                         ) -> list[tuple[str, str, int, int, str]]:
        found = []
        for start in range(0, len(payee_keys), 500):  # bounded IN lists: a payroll voucher has thousands of lines
            chunk = payee_keys[start:start + 500]
            marks = ", ".join("?" for _ in chunk)
            found += self._read(self._sql(
                f"SELECT p.payee_key, p.voucher_id, p.revision, p.line_number, i.status FROM payee_index p "
                f"JOIN intake i ON i.voucher_id = p.voucher_id AND i.revision = p.revision "
                f"WHERE p.payee_key IN ({marks}) AND p.indexed_at >= ? AND NOT (p.voucher_id = ? AND p.revision = COALESCE(?, p.revision)) "
                # a line the bank returned (退匯) was not paid, whatever its voucher's status says
                f"AND NOT EXISTS (SELECT 1 FROM payments m WHERE m.voucher_id = p.voucher_id AND "
                f"m.revision = p.revision AND m.line_number = p.line_number AND m.state = 'returned') "
                f"ORDER BY p.indexed_at, p.voucher_id, p.revision, p.line_number"),
                (*chunk, self._time_param(since), exclude_voucher, exclude_revision))
        return [tuple(row) for row in found]
