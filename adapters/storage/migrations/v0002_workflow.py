"""Version 2: the approval workflow — signed actions, each revision's chain head and status time.

Design notes kept with the schema:
- actions' primary key (voucher_id, revision, stage) makes a second decision at one stage impossible,
  whatever the code does; receipt_id is unique like intake's.
- intake.chain_sha256 is the last signed document of the revision's chain, and with intake.status the
  compare-and-set every workflow write checks ("UPDATE … WHERE status = ? AND chain_sha256 = ?"): two
  processes deciding on the same state cannot both apply.
- intake.status_at orders queues (oldest first); intake_queue serves "what awaits this role here".
- audit_by_subject serves a voucher's history from the audit log itself, so history and audit can never
  disagree.
- Existing rows get their received bytes as chain head and their received time as status time.
"""

VERSION = 2
DESCRIPTION = "actions, chain head and status time on intake"

_ACTIONS = """CREATE TABLE actions (
        voucher_id TEXT{C} NOT NULL,
        revision INTEGER NOT NULL,
        stage TEXT{C} NOT NULL,
        agency TEXT{C} NOT NULL,
        decision TEXT NOT NULL,
        reason_code TEXT,
        reason_text TEXT,
        action_sha256 TEXT NOT NULL,
        action_bytes {BLOB} NOT NULL,
        signed_at {TIME} NOT NULL,
        received_at {TIME} NOT NULL,
        person TEXT NOT NULL,
        key_sha256 TEXT NOT NULL,
        certificate TEXT NOT NULL,
        grant_kind TEXT NOT NULL,
        receipt_id TEXT NOT NULL UNIQUE,
        receipt_xml {BLOB} NOT NULL,
        status_after TEXT NOT NULL,
        audit_seq {SEQ} NOT NULL REFERENCES audit_log (seq),
        PRIMARY KEY (voucher_id, revision, stage),
        FOREIGN KEY (voucher_id, revision) REFERENCES intake (voucher_id, revision)
    )"""

SQLITE = [
    "ALTER TABLE intake ADD COLUMN chain_sha256 TEXT",
    "ALTER TABLE intake ADD COLUMN status_at TEXT",
    "UPDATE intake SET chain_sha256 = received_sha256, status_at = received_at",
    "CREATE INDEX intake_queue ON intake (status, agency, status_at, voucher_id, revision)",
    _ACTIONS.format(C="", BLOB="BLOB", TIME="TEXT", SEQ="INTEGER"),
    "CREATE INDEX audit_by_subject ON audit_log (subject, seq)",
]

POSTGRESQL = [
    "ALTER TABLE intake ADD COLUMN chain_sha256 TEXT",
    "ALTER TABLE intake ADD COLUMN status_at TIMESTAMPTZ",
    "UPDATE intake SET chain_sha256 = received_sha256, status_at = received_at",
    "ALTER TABLE intake ALTER COLUMN chain_sha256 SET NOT NULL",
    "ALTER TABLE intake ALTER COLUMN status_at SET NOT NULL",
    "CREATE INDEX intake_queue ON intake (status, agency, status_at, voucher_id, revision)",
    _ACTIONS.format(C=' COLLATE "C"', BLOB="BYTEA", TIME="TIMESTAMPTZ", SEQ="BIGINT"),
    "CREATE INDEX audit_by_subject ON audit_log (subject, seq)",
]
