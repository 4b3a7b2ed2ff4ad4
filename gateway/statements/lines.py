"""Statements (對帳單): an agency's payment lines over a period of Taipei dates, with opening and closing totals.

Pure: stored lines in, a :class:`Statement` out; rendering is gateway/statements/csv_export.py (CSV) and
gateway/statements/camt053.py (ISO 20022 camt.053). The store reads the lines (adapters/storage/bank.py ``statement_lines``)
and the opening total (``paid_before``); the rules below are the ones docs/api.md states.

The date rule. Every line carries two dates (kept by the store, migration v0008):

- ``paid_on``: when it was paid (the bank's booking date, else the Taipei date of the report saying so),
  kept when the line is returned later;
- ``statement_on``: its booking date when the bank booked it (paid, or returned after booking), else the
  Taipei date of its last change of state.

A statement of [start, end] (both inclusive) holds one entry per:

- ``payment``: a line paid on a day of the period (counted in ``paid``), whatever it became since;
- ``return``: a line paid at some time and returned (退匯 after settlement) on a day of the period, by its
  ``statement_on`` (counted in ``returned``);
- ``refused``: a line returned before it was ever paid (the money never left) on a day of the period;
- ``open``: a line still pending or accepted at the bank whose last change falls in the period.

So a line paid and returned within one period has two entries. Totals are whole NT$ of money paid out,
net of what came back: ``opening`` is what was paid before ``start`` less what was returned after payment
before ``start``; ``closing = opening + paid - returned``, which is the opening of the next period.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

from gateway.bank.payments import LineState

MAX_PERIOD_DAYS = 400
"""The longest statement period, in days (a fiscal year and some)."""

FIRST_ROC_YEAR = 1912
"""民國元年: the first year an ROC date exists for."""


class EntryKind(enum.Enum):
    PAYMENT = "payment"
    RETURN = "return"
    REFUSED = "refused"
    OPEN = "open"


_KIND_ORDER = {EntryKind.PAYMENT: 0, EntryKind.RETURN: 1, EntryKind.REFUSED: 2, EntryKind.OPEN: 3}


@dataclass(frozen=True)
class StatementLine:
    """One payment line as a statement reads it from the store."""

    voucher_id: str
    revision: int
    line_number: int
    end_to_end_id: str
    payee_name: str | None
    payee_bank_code: str | None
    payee_branch_code: str | None
    payee_account: str | None
    amount: int  # whole NT$
    state: LineState
    reason_code: str | None
    reason_text: str | None
    bank_reference: str | None
    message_id: str
    booked_on: datetime.date | None
    paid_on: datetime.date | None
    statement_on: datetime.date

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount <= 0:
            raise ValueError(f"a line amount is a positive whole NT$ amount, not {self.amount!r}")


@dataclass(frozen=True)
class Entry:
    """One row of a statement: what happened to ``line`` on ``on``."""

    kind: EntryKind
    on: datetime.date
    line: StatementLine


@dataclass(frozen=True)
class Period:
    """Taipei dates, both inclusive, at most MAX_PERIOD_DAYS days, from 民國元年 on."""

    start: datetime.date
    end: datetime.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"the period ends ({self.end}) before it starts ({self.start})")
        if self.days > MAX_PERIOD_DAYS:
            raise ValueError(f"the period is {self.days} days; at most {MAX_PERIOD_DAYS}")
        if self.start.year < FIRST_ROC_YEAR:
            raise ValueError(f"the period starts before {FIRST_ROC_YEAR}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def __contains__(self, day: object) -> bool:
        return isinstance(day, datetime.date) and self.start <= day <= self.end


@dataclass(frozen=True)
class Statement:
    agency: str
    period: Period
    created_at: datetime.datetime
    opening: int
    entries: tuple[Entry, ...]

    @property
    def paid(self) -> int:
        return sum(e.line.amount for e in self.entries if e.kind is EntryKind.PAYMENT)

    @property
    def returned(self) -> int:
        return sum(e.line.amount for e in self.entries if e.kind is EntryKind.RETURN)

    @property
    def closing(self) -> int:
        return self.opening + self.paid - self.returned

    @property
    def statement_id(self) -> str:
        """``STMT`` + agency + start + end, e.g. ``STMT379000001A2026010120261231`` (30 characters, Max35Text)."""
        return f"STMT{self.agency}{self.period.start:%Y%m%d}{self.period.end:%Y%m%d}"


def entries_of(line: StatementLine, period: Period) -> list[Entry]:
    """The entries ``line`` makes in a statement of ``period`` (none, one, or two: paid and returned)."""
    out = []
    if line.paid_on is not None and line.paid_on in period:
        out.append(Entry(EntryKind.PAYMENT, line.paid_on, line))
    if line.statement_on in period:
        if line.state is LineState.RETURNED:
            out.append(Entry(EntryKind.RETURN if line.paid_on is not None else EntryKind.REFUSED,
                             line.statement_on, line))
        elif line.state in (LineState.PENDING, LineState.ACCEPTED):
            out.append(Entry(EntryKind.OPEN, line.statement_on, line))
    return out


def build_statement(agency: str, period: Period, lines: list[StatementLine], opening: int,
                    created_at: datetime.datetime) -> Statement:
    """The statement of ``lines`` (those the store found for the period; others make no entry) after
    ``opening`` (net paid before the period, as :func:`opening_total` defines it), entries by date, voucher,
    revision, line."""
    if not isinstance(opening, int) or isinstance(opening, bool):
        raise ValueError(f"the opening total is whole NT$, not {opening!r}")
    entries = [entry for line in lines for entry in entries_of(line, period)]
    entries.sort(key=lambda e: (e.on, e.line.voucher_id, e.line.revision, e.line.line_number, _KIND_ORDER[e.kind]))
    return Statement(agency, period, created_at, opening, tuple(entries))


def opening_total(lines: list[StatementLine], start: datetime.date) -> int:
    """Net paid before ``start``: paid before it, less returned after payment before it. The store computes
    the same in SQL (``paid_before``); this is the definition, and what its tests compare with."""
    paid = sum(line.amount for line in lines if line.paid_on is not None and line.paid_on < start)
    returned = sum(line.amount for line in lines if line.state is LineState.RETURNED and line.paid_on is not None
                   and line.statement_on < start)
    return paid - returned


def roc_date(day: datetime.date) -> str:
    """民國 date as Taiwanese forms write it: 2026-11-27 is ``115/11/27``."""
    if day.year < FIRST_ROC_YEAR:
        raise ValueError(f"{day} lies before 民國元年")
    return f"{day.year - 1911:03d}/{day.month:02d}/{day.day:02d}"
