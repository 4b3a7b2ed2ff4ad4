"""Versioned schema migrations shared by the SQLite and PostgreSQL stores.

Each step is a Python module (``vNNNN_*.py``) holding plain SQL per backend, so the steps ship inside the
package with no package-data configuration and both backends advance through the same version numbers.
The ``schema_version`` table records every step applied. A store applies the missing steps when it opens,
in one transaction under the backend's write lock (so two processes opening at once apply each step once),
and refuses to open a database whose version is newer than this code knows: an older gateway writing into
a newer schema could break invariants it does not know about.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adapters.storage.migrations import (
    v0001_initial,
    v0002_workflow,
    v0003_treasury,
    v0004_due_dates,
    v0005_event_cursor,
    v0006_bank_exchange,
    v0007_bank_resend,
    v0008_statements,
    v0009_deposit_notices,
    v0010_console_indexes,
    v0011_console_sessions,
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]
    backfill: Callable | None = None
    """``backfill(conn, sql)``: a data step the SQL cannot do (e.g. reading stored vouchers), run after the
    statements in the same transaction; ``sql`` turns ``?`` into the driver's parameter marker."""

    def statements(self, dialect: str) -> tuple[str, ...]:
        return {"sqlite": self.sqlite, "postgresql": self.postgresql}[dialect]


MIGRATIONS: tuple[Migration, ...] = tuple(
    Migration(m.VERSION, m.DESCRIPTION, tuple(m.SQLITE), tuple(m.POSTGRESQL), getattr(m, "backfill", None))
    for m in (v0001_initial, v0002_workflow, v0003_treasury, v0004_due_dates, v0005_event_cursor, v0006_bank_exchange,
              v0007_bank_resend, v0008_statements, v0009_deposit_notices,
              v0010_console_indexes, v0011_console_sessions)
)
LATEST = MIGRATIONS[-1].version

SCHEMA_VERSION_DDL = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
              "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))",
    "postgresql": "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                  "description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
}


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer gateway; this one must not touch it."""


def pending(current: int) -> list[Migration]:
    """The steps to apply to a database at ``current`` (0: empty), or SchemaTooNew."""
    if current > LATEST:
        raise SchemaTooNew(f"the store's schema is version {current}, newer than this gateway knows "
                           f"({LATEST}); upgrade the gateway")
    return [m for m in MIGRATIONS if m.version > current]


assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1)), "migration versions must be 1..N"
