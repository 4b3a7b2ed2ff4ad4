"""Version 1: accepted vouchers (intake), the hash-chained audit log and, for PostgreSQL, its head row.

Design notes kept with the schema:
- intake's primary key (voucher_id, revision) is what makes a duplicate impossible, whatever the code does.
- audit_log.seq is assigned by the store (not a sequence: sequences leave gaps on rollback, and a gap reads
  as tampering); UNIQUE(prev_hash) makes a forked chain impossible even if serialisation failed.
- Times are fixed-width UTC text in SQLite (sorts as time) and TIMESTAMPTZ in PostgreSQL; audit detail
  and intake summary are canonical JSON text in both, so the hash covers exactly the stored text.
- Text keys are COLLATE "C" in PostgreSQL, as SQLite's BINARY: both order pages the same way, whatever
  the server's locale.
- audit_head (PostgreSQL) is the row every appender locks FOR UPDATE: the chain's serialisation point
  across processes. SQLite needs none: BEGIN IMMEDIATE takes the database's one write lock.
"""

VERSION = 1
DESCRIPTION = "intake, audit_log"

SQLITE = [
    """CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        document_sha256 TEXT,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL UNIQUE
    )""",
    """CREATE TABLE intake (
        voucher_id TEXT NOT NULL,
        revision INTEGER NOT NULL,
        agency TEXT NOT NULL,
        received_sha256 TEXT NOT NULL,
        received_bytes BLOB NOT NULL,
        received_at TEXT NOT NULL,
        status TEXT NOT NULL,
        receipt_id TEXT NOT NULL UNIQUE,
        receipt_xml BLOB NOT NULL,
        summary TEXT NOT NULL,
        audit_seq INTEGER NOT NULL REFERENCES audit_log (seq),
        PRIMARY KEY (voucher_id, revision)
    )""",
    "CREATE INDEX intake_by_agency ON intake (agency, received_at, voucher_id, revision)",
    "CREATE INDEX intake_by_agency_status ON intake (agency, status, received_at, voucher_id, revision)",
]

POSTGRESQL = [
    """CREATE TABLE audit_log (
        seq BIGINT PRIMARY KEY,
        at TIMESTAMPTZ NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        document_sha256 TEXT,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL UNIQUE
    )""",
    """CREATE TABLE audit_head (
        one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "INSERT INTO audit_head (one, seq, hash) VALUES (TRUE, 0, repeat('0', 64))",
    """CREATE TABLE intake (
        voucher_id TEXT COLLATE "C" NOT NULL,
        revision INTEGER NOT NULL,
        agency TEXT COLLATE "C" NOT NULL,
        received_sha256 TEXT NOT NULL,
        received_bytes BYTEA NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        status TEXT COLLATE "C" NOT NULL,
        receipt_id TEXT NOT NULL UNIQUE,
        receipt_xml BYTEA NOT NULL,
        summary TEXT NOT NULL,
        audit_seq BIGINT NOT NULL REFERENCES audit_log (seq),
        PRIMARY KEY (voucher_id, revision)
    )""",
    "CREATE INDEX intake_by_agency ON intake (agency, received_at, voucher_id, revision)",
    "CREATE INDEX intake_by_agency_status ON intake (agency, status, received_at, voucher_id, revision)",
]
