"""Version 5: the queue-event publisher's cursor over the audit log (the outbox).

Design notes kept with the schema:
- One row per reader: the audit seq up to which it has published. The publisher moves it only with a
  compare-and-set (``UPDATE … SET seq = new WHERE name = ? AND seq = old``), after the broker confirmed
  every event up to ``new``; so a crash republishes, never skips (at-least-once), and two publishers
  cannot move it back.
- The row of the gateway's publisher (``vgw.events``, adapters/amqp/event_publisher.py) is created here at the
  audit log's head: a database that already holds vouchers starts publishing with the next change rather
  than replaying its whole history as events for queues long since emptied. A new database starts at 0.
"""

VERSION = 5
DESCRIPTION = "event_cursor"

_SEED = "INSERT INTO event_cursor (name, seq) SELECT 'vgw.events', COALESCE(MAX(seq), 0) FROM audit_log"

SQLITE = [
    "CREATE TABLE event_cursor (name TEXT PRIMARY KEY, seq INTEGER NOT NULL CHECK (seq >= 0))",
    _SEED,
]

POSTGRESQL = [
    'CREATE TABLE event_cursor (name TEXT COLLATE "C" PRIMARY KEY, seq BIGINT NOT NULL CHECK (seq >= 0))',
    _SEED,
]
