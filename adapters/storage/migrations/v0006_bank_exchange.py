"""Version 6: the bank exchange — payment lines, the bank messages (outbox and inbox), per-line money.

Design notes kept with the schema:
- payments has one row per payment line sent to the bank, keyed by its EndToEndId (gateway/bank/payments.py),
  which is derived from (voucher, revision, line) alone; the UNIQUE on (voucher_id, revision, line_number)
  and the primary key make "a line in two transfer messages" impossible whatever the code does.
- bank_messages is both outbox and inbox. An outbound row is written in the SAME transaction as its
  payments and the vouchers' move to batched; ``sent_at`` stays NULL until the broker confirmed it, and the
  relay publishes every row still NULL (the partial index serves exactly that scan). An inbound row keeps
  the bank's signed bytes; (direction, message_id) is unique, so a report processed twice is refused
  by the database, and ``sha256`` tells a harmless repeat from a conflicting one.
- Once a voucher is batched its money is tracked per line: the reservation moves to state ``batched`` and
  each line's bank outcome moves its own amount (paid: reserved → consumed; returned: freed). SQLite cannot
  alter a CHECK, so the reservations table is rebuilt with the new state allowed.
- payments.unconfirmed_at marks lines with no final answer after the configured time (an operator alert).
- intake_queue_all serves the queues read across agencies, oldest first.
"""

VERSION = 6
DESCRIPTION = "payments, bank_messages, batched reservations"

_TABLES = [
    """CREATE TABLE bank_messages (
        direction TEXT NOT NULL CHECK (direction IN ('out', 'in')),
        message_id TEXT{C} NOT NULL,
        message_type TEXT NOT NULL,
        routing TEXT NOT NULL,
        body {BLOB} NOT NULL,
        sha256 TEXT NOT NULL,
        payment_count INTEGER NOT NULL CHECK (payment_count >= 0),
        control_sum BIGINT NOT NULL CHECK (control_sum >= 0),
        created_at {TIME} NOT NULL,
        sent_at {TIME},
        PRIMARY KEY (direction, message_id)
    )""",
    "CREATE INDEX bank_messages_unsent ON bank_messages (created_at, message_id) "
    "WHERE direction = 'out' AND sent_at IS NULL",
    """CREATE TABLE payments (
        end_to_end_id TEXT{C} PRIMARY KEY,
        voucher_id TEXT{C} NOT NULL,
        revision INTEGER NOT NULL,
        line_number INTEGER NOT NULL,
        agency TEXT{C} NOT NULL,
        fiscal_year INTEGER NOT NULL,
        budget_subject TEXT{C} NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        message_id TEXT{C} NOT NULL,
        payment_info_id TEXT{C} NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'paid', 'returned')),
        reason_code TEXT,
        reason_text TEXT,
        bank_reference TEXT,
        booked_on TEXT,
        created_at {TIME} NOT NULL,
        changed_at {TIME} NOT NULL,
        unconfirmed_at {TIME},
        UNIQUE (voucher_id, revision, line_number),
        FOREIGN KEY (voucher_id, revision) REFERENCES intake (voucher_id, revision)
    )""",
    "CREATE INDEX payments_by_message ON payments (message_id, payment_info_id)",
    "CREATE INDEX payments_open ON payments (created_at) WHERE state IN ('pending', 'accepted')",
    # Queues across every agency (the batcher, the treasury and settlement sweeps) in status-time order;
    # intake_queue leads with the agency, so without this SQLite sorted whole rows, voucher bytes and all.
    "CREATE INDEX intake_queue_all ON intake (status, status_at, voucher_id, revision)",
]

_STATES = "('reserved', 'consumed', 'released', 'batched')"

SQLITE = [t.format(C="", TIME="TEXT", BLOB="BLOB") for t in _TABLES] + [
    f"""CREATE TABLE reservations_v6 (
        voucher_id TEXT NOT NULL,
        revision INTEGER NOT NULL,
        agency TEXT NOT NULL,
        fiscal_year INTEGER NOT NULL,
        budget_subject TEXT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        state TEXT NOT NULL CHECK (state IN {_STATES}),
        changed_at TEXT NOT NULL,
        PRIMARY KEY (voucher_id, revision),
        FOREIGN KEY (agency, fiscal_year, budget_subject) REFERENCES allotments (agency, fiscal_year, budget_subject)
    )""",
    "INSERT INTO reservations_v6 SELECT voucher_id, revision, agency, fiscal_year, budget_subject, amount, state, "
    "changed_at FROM reservations",
    "DROP TABLE reservations",
    "ALTER TABLE reservations_v6 RENAME TO reservations",
]

POSTGRESQL = [t.format(C=' COLLATE "C"', TIME="TIMESTAMPTZ", BLOB="BYTEA") for t in _TABLES] + [
    "ALTER TABLE reservations DROP CONSTRAINT reservations_state_check",
    f"ALTER TABLE reservations ADD CONSTRAINT reservations_state_check CHECK (state IN {_STATES})",
]
