"""Version 3: the treasury checks — allotted budgets, each voucher's reservation, the payee index.

Design notes kept with the schema:
- allotments carries its own invariant as a CHECK: reserved and consumed are never negative and never
  exceed the allotment together. Reservations take money with a conditional UPDATE ("… WHERE allotted -
  reserved - consumed >= amount"), so two concurrent releases against one allotment cannot both take the
  last of it, in either database; the CHECK is the backstop if code ever forgot the condition.
- reservations has one row per voucher revision (its primary key): a revision reserves at most once.
- payee_index holds one digest per released payment line (gateway/treasury/checks.py payee_key) for the
  duplicate-payment guard; indexed by (payee_key, indexed_at) for its windowed lookup.
"""

VERSION = 3
DESCRIPTION = "allotments, reservations, payee_index"

_TABLES = [
    """CREATE TABLE allotments (
        agency TEXT{C} NOT NULL,
        fiscal_year INTEGER NOT NULL,
        budget_subject TEXT{C} NOT NULL,
        allotted BIGINT NOT NULL,
        reserved BIGINT NOT NULL DEFAULT 0,
        consumed BIGINT NOT NULL DEFAULT 0,
        updated_at {TIME} NOT NULL,
        PRIMARY KEY (agency, fiscal_year, budget_subject),
        CHECK (reserved >= 0 AND consumed >= 0 AND reserved + consumed <= allotted)
    )""",
    """CREATE TABLE reservations (
        voucher_id TEXT{C} NOT NULL,
        revision INTEGER NOT NULL,
        agency TEXT{C} NOT NULL,
        fiscal_year INTEGER NOT NULL,
        budget_subject TEXT{C} NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        state TEXT NOT NULL CHECK (state IN ('reserved', 'consumed', 'released')),
        changed_at {TIME} NOT NULL,
        PRIMARY KEY (voucher_id, revision),
        FOREIGN KEY (agency, fiscal_year, budget_subject) REFERENCES allotments (agency, fiscal_year, budget_subject)
    )""",
    """CREATE TABLE payee_index (
        voucher_id TEXT{C} NOT NULL,
        revision INTEGER NOT NULL,
        line_number INTEGER NOT NULL,
        payee_key TEXT NOT NULL,
        indexed_at {TIME} NOT NULL,
        PRIMARY KEY (voucher_id, revision, line_number)
    )""",
    "CREATE INDEX payee_index_by_key ON payee_index (payee_key, indexed_at)",
]

SQLITE = [t.format(C="", TIME="TEXT") for t in _TABLES]
POSTGRESQL = [t.format(C=' COLLATE "C"', TIME="TIMESTAMPTZ") for t in _TABLES]
