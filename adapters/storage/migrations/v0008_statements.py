"""Version 8: statements (對帳單, ``GET /v1/statements``) read from the payments table alone.

Design notes kept with the schema:
- The payee of each line (name, bank code, branch code, account number) is copied into its payments row
  when the line is batched (adapters/storage/bank.py ``record_batch``), from the same Payment that goes into
  the pain.001. A statement of an agency-year (about 10,000 lines) then needs no signed voucher parsed.
  Rows written before this version are filled by :func:`backfill` from the stored vouchers
  (gateway/vouchers/xml_mapping.py ``read_stored_voucher``), once, inside the migration's transaction.
- statement_on is the Taipei date that places a line in a statement: its booking date when the bank booked
  it (paid, or returned after booking), else the Taipei date of its last change of state. paid_on is the
  date it was paid (the booking date, else the Taipei date of the report) and is KEPT when a paid line is
  returned later, so a statement can tell 退匯 after payment (money came back) from a refusal before
  settlement (money never left). Both are kept by ``_change_lines`` in the same UPDATE as the state.
  Rows written before this version: statement_on from booked_on / changed_at, paid_on for paid lines only
  (a line paid and returned before version 8 counts as never paid: the history to tell is not stored).
- payments_by_agency_statement and payments_by_agency_paid serve the statement query (one agency, a range
  of dates) and its opening total.
"""

from __future__ import annotations

VERSION = 8
DESCRIPTION = "payments payee columns, statement_on, paid_on"

_COLUMNS = [
    "ALTER TABLE payments ADD COLUMN payee_name TEXT",
    "ALTER TABLE payments ADD COLUMN payee_bank_code TEXT",
    "ALTER TABLE payments ADD COLUMN payee_branch_code TEXT",
    "ALTER TABLE payments ADD COLUMN payee_account TEXT",
    "ALTER TABLE payments ADD COLUMN statement_on TEXT",
    "ALTER TABLE payments ADD COLUMN paid_on TEXT",
]
_INDEXES = [
    "CREATE INDEX payments_by_agency_statement ON payments (agency, statement_on)",
    "CREATE INDEX payments_by_agency_paid ON payments (agency, paid_on) WHERE paid_on IS NOT NULL",
]

SQLITE = _COLUMNS + [
    "UPDATE payments SET statement_on = COALESCE(booked_on, date(changed_at, '+8 hours'))",
    "UPDATE payments SET paid_on = statement_on WHERE state = 'paid'",
] + _INDEXES
POSTGRESQL = _COLUMNS + [
    "UPDATE payments SET statement_on = COALESCE(booked_on, "
    "to_char(changed_at AT TIME ZONE 'Asia/Taipei', 'YYYY-MM-DD'))",
    "UPDATE payments SET paid_on = statement_on WHERE state = 'paid'",
] + _INDEXES


def backfill(conn, sql) -> None:
    """Fill the payee columns of rows batched before version 8 from their stored signed vouchers (each voucher
    parsed once). ``conn`` is the migration's connection, ``sql`` turns ``?`` into the driver's marker."""
    from gateway.vouchers.xml_mapping import read_stored_voucher

    keys = conn.execute("SELECT DISTINCT voucher_id, revision FROM payments WHERE payee_name IS NULL "
                        "ORDER BY voucher_id, revision").fetchall()
    for voucher_id, revision in keys:
        row = conn.execute(sql("SELECT received_bytes FROM intake WHERE voucher_id = ? AND revision = ?"),
                           (voucher_id, revision)).fetchone()
        if row is None:
            continue
        voucher = read_stored_voucher(bytes(row[0]))
        for line in voucher.lines:
            conn.execute(sql("UPDATE payments SET payee_name = ?, payee_bank_code = ?, payee_branch_code = ?, "
                             "payee_account = ? WHERE voucher_id = ? AND revision = ? AND line_number = ?"),
                         (line.payee_name, line.bank_code, line.branch_code, line.account_number, voucher_id,
                          revision, line.number))
