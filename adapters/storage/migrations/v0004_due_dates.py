"""Version 4: each revision's due date (urgent: the working day of receipt; ordinary: five working days on).

Fixed when the revision is received (gateway/workflow/working_days.py), so queues and the overdue metrics need no
calendar arithmetic per row; NULL where the calendar did not cover the date (logged at intake). Existing
rows keep NULL: they are reported as "no deadline", not guessed.
"""

VERSION = 4
DESCRIPTION = "intake.due_on"

SQLITE = [
    "ALTER TABLE intake ADD COLUMN due_on TEXT",
    "CREATE INDEX intake_due ON intake (status, due_on)",
]

POSTGRESQL = [
    "ALTER TABLE intake ADD COLUMN due_on DATE",
    "CREATE INDEX intake_due ON intake (status, due_on)",
]
