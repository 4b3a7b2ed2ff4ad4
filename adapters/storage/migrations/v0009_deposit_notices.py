"""Version 9: deposit notices (入戶通知), an outbox of one row per payment line that asked for one.

Design notes kept with the schema:
- A row is written in the SAME transaction as its payment line (``record_batch``) when the voucher line
  carries a <Notice>, in state ``waiting``; the booking (the line moving to ``paid`` in ``record_report``)
  turns it ``pending`` in that report's transaction, and a return (退匯) before the notice left cancels it.
  The payment's EndToEndId is the primary key (and names the payments row, which is unique per voucher,
  revision and line), so a line can never have two notices, whether its booking is reported twice or a crash
  repeats a step. Voucher, revision, line and agency are read from the payments row, not copied: every
  copied column is one more write per line on the bank day's critical path.
- Why write it at batching and not only at booking: the channel and address come from the signed voucher,
  which the booking no longer parses; copying them when the line is written keeps the booking one UPDATE.
- The worker claims due rows with a lease (``claim`` token + ``lease_until``), on PostgreSQL through
  ``FOR UPDATE SKIP LOCKED``; a worker that dies mid-send leaves a lease that runs out, and the notice goes
  again with the same Message-ID. ``attempts`` counts claims, so a notice that kills its sender gives up too.
- deposit_notices_due serves "pending and due" (the only scan the worker makes). deposit_notices_trouble
  serves ``vgw notices list --state bounced|failed``, what an operator looks for; it is partial so that the
  booking, which moves every notice from waiting to pending, maintains no index but the due one (a full
  index on state cost the bank day's acknowledgements about 5%).
- Lines of vouchers batched before version 9 get no notice: their lines were written without one.
"""

from __future__ import annotations

VERSION = 9
DESCRIPTION = "deposit_notices"

_TABLE = """CREATE TABLE deposit_notices (
    end_to_end_id TEXT{C} PRIMARY KEY REFERENCES payments (end_to_end_id),
    channel TEXT NOT NULL CHECK (channel IN ('email', 'fax', 'post')),
    address TEXT NOT NULL,
    post_code TEXT,
    purpose TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'pending', 'sent', 'bounced', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at {TIME},
    lease_until {TIME},
    claim TEXT,
    last_error TEXT,
    message_id TEXT,
    booked_at {TIME},
    sent_at {TIME},
    changed_at {TIME} NOT NULL
)"""
_INDEXES = [
    "CREATE INDEX deposit_notices_due ON deposit_notices (next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX deposit_notices_trouble ON deposit_notices (state, end_to_end_id) "
    "WHERE state IN ('bounced', 'failed')",
]

SQLITE = [_TABLE.format(C="", TIME="TEXT")] + _INDEXES
POSTGRESQL = [_TABLE.format(C=' COLLATE "C"', TIME="TIMESTAMPTZ")] + _INDEXES
