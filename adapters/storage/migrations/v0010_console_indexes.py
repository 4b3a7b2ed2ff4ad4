"""Version 10: indexes for the web console's lists (adapters/console/reads.py), so every page it shows is one
keyset range scan at a million vouchers.
Design notes kept with the schema:
- intake_by_received and intake_by_status_received serve a treasury operator's search across every agency
  (the API's lists all lead with the agency: intake_by_agency, intake_by_agency_status).
- payments_by_agency_payee and payments_by_payee serve the search by payee name (a prefix range on
  payee_name, the column migration v0008 added), for one agency and across agencies.
- bank_messages_by_time serves today's batches and bank reports (a range of created_at per direction).
- payments_returned and payments_unconfirmed are partial indexes on the few lines an operator must look at.
- IF NOT EXISTS: a database rolled back past an earlier step by hand (tests do) keeps its intake indexes.
"""

from __future__ import annotations

VERSION = 10
DESCRIPTION = "console indexes"

_INDEXES = [
    "CREATE INDEX IF NOT EXISTS intake_by_received ON intake (received_at, voucher_id, revision)",
    "CREATE INDEX IF NOT EXISTS intake_by_status_received ON intake (status, received_at, voucher_id, revision)",
    "CREATE INDEX IF NOT EXISTS payments_by_agency_payee ON payments (agency, payee_name, end_to_end_id)",
    "CREATE INDEX IF NOT EXISTS payments_by_payee ON payments (payee_name, end_to_end_id)",
    "CREATE INDEX IF NOT EXISTS bank_messages_by_time ON bank_messages (direction, created_at, message_id)",
    "CREATE INDEX IF NOT EXISTS payments_returned ON payments (changed_at, end_to_end_id) WHERE state = 'returned'",
    "CREATE INDEX IF NOT EXISTS payments_unconfirmed ON payments (unconfirmed_at, end_to_end_id) "
    "WHERE unconfirmed_at IS NOT NULL AND state IN ('pending', 'accepted')",
]
SQLITE = list(_INDEXES)
POSTGRESQL = list(_INDEXES)
