"""Version 7: re-sending transfer messages the bank never fully answered (adapters/bank/worker.py).

Design notes kept with the schema:
- payments_open_by_message lists the open lines (pending or accepted) by message: the sweep's question
  "which sent messages still have an open line, and how many" (``unanswered_messages``) reads only this
  partial index, which holds just the lines in flight, and reads nothing else of them (``state`` is in it
  so SQLite sees it as covering). Without it SQLite scanned every line ever sent, through
  payments_by_message, on every sweep.
- bank_messages.resends counts how often a sent outbound message was made unsent again, by the worker or by
  an operator (``mark_unsent`` adds one in the same UPDATE). It lives in the row, not in a worker's memory,
  so the cap on automatic re-sends holds across restarts (the crash tests kill the worker at random) and
  across several workers on one store, and the audit entry's ``attempt`` is the message's true count.
  Counting earlier ``bank.resend`` audit entries instead would read the audit log's JSON on every sweep.
"""

VERSION = 7
DESCRIPTION = "payments_open_by_message, bank_messages.resends"

_STEPS = [
    "ALTER TABLE bank_messages ADD COLUMN resends INTEGER NOT NULL DEFAULT 0 CHECK (resends >= 0)",
    "CREATE INDEX payments_open_by_message ON payments (message_id, state) WHERE state IN ('pending', 'accepted')",
]

SQLITE = list(_STEPS)
POSTGRESQL = list(_STEPS)
