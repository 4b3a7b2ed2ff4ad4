"""Working days, for voucher deadlines: urgent vouchers are due the same working day, ordinary ones within five.

Taiwan's government office calendar (政府行政機關辦公日曆表, published each June by the DGPA, 行政院人事行政總處,
for the next year) is not "Monday to Friday minus a list of holidays": holidays on a weekend are observed on
a nearby weekday (補假), and some years turn a Saturday into a working day (補行上班) to pay for a bridge day.
So the calendar is data: a CSV of the dates that differ from the plain week (see :data:`CSV_HEADER`), shipped
in ``gateway/data/tw-public-holidays.csv`` for the years it covers, and replaceable by operators with a newer
file through :meth:`WorkingDayCalendar.from_csv`.

A calendar answers only for the years its file covers. Asked about any other date it raises
:class:`DateOutsideCalendar` rather than guess from weekdays: a deadline computed without next year's
holidays is silently wrong, and a wrong deadline is worse than none.

How a deadline is computed (:meth:`WorkingDayCalendar.due_date`):

- Business dates are Taipei dates (UTC+8, no daylight saving), whatever offset the receipt time carries.
- **The business day of receipt** is the Taipei date of receipt if that is a working day and the voucher
  arrived before the daily cutoff; otherwise the next working day. A voucher received on Saturday, on a
  holiday or after the cutoff is treated as received when the treasury next opens: nobody can act on it
  sooner, and counting closed days against the treasury would make an urgent voucher received on Saturday
  overdue before anyone could read it.
- **Urgent**: due on the business day of receipt ("the same day").
- **Ordinary**: due on the fifth working day after the business day of receipt. The day of receipt is not
  one of the five, as in the Civil Code's rule for periods counted in days (民法第120條第2項, 始日不算入).
- The default cutoff (:data:`DEFAULT_CUTOFF`, 15:30 Taipei) is a policy default of this gateway, chosen to
  leave a same-day voucher time for the treasury's checks and the day's interbank remittance; it is not a
  published rule. Pass the time agreed with the Finance Bureau, or ``None`` for no cutoff.
- **Overdue** (:func:`is_overdue`) means the due day has ended in Taipei: a voucher due on the 5th is
  overdue from 00:00 on the 6th, Taipei time.
"""

from __future__ import annotations

import csv
import datetime
import enum
import functools
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources

from gateway.business_time import TAIPEI
from gateway.errors import GatewayError, Problem, Refusal
from gateway.vouchers.model import Urgency

__all__ = [
    "CSV_HEADER",
    "DEFAULT_CUTOFF",
    "DUE_WORKING_DAYS",
    "FILE_INVALID",
    "CalendarEntry",
    "DateOutsideCalendar",
    "DayKind",
    "WorkingDayCalendar",
    "is_overdue",
]

CSV_HEADER = ("date", "kind", "name")
"""The calendar file's header. Lines starting with ``#`` (before or after it) are comments."""

FILE_INVALID = "calendar-file-invalid"
"""The refusal code for a calendar file that cannot be loaded; every problem carries its line and column."""

DEFAULT_CUTOFF = datetime.time(15, 30)
"""Vouchers received at or after this Taipei time count as received on the next working day (see module doc)."""

DUE_WORKING_DAYS = {Urgency.URGENT: 0, Urgency.ORDINARY: 5}
"""Working days after the business day of receipt within which a voucher is due."""

SHIPPED_FILE = "tw-public-holidays.csv"
MAX_NAME_LENGTH = 100
_FIRST_YEAR, _LAST_YEAR = 1912, 9998  # ROC year 1 onwards; 9998 leaves room to step past a covered year's end
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # date.fromisoformat alone would also take 20260101
_DAY = datetime.timedelta(days=1)
_SATURDAY = 5


class DayKind(enum.Enum):
    HOLIDAY = "holiday"
    """No office work that day: a national holiday, an observed day (補假) or a bridge day."""
    WORKDAY = "workday"
    """A Saturday or Sunday on which offices work (補行上班)."""


@dataclass(frozen=True)
class CalendarEntry:
    """One row of the calendar file: a date that differs from the plain week, or a named holiday."""

    day: datetime.date
    kind: DayKind
    name: str


class DateOutsideCalendar(GatewayError):
    """A date outside the years the loaded calendar covers. Not the sender's fault: the operator must load the
    DGPA calendar for that year. Adapters should treat it as a service fault (log, alert), never as a refusal."""

    def __init__(self, day: datetime.date, first: datetime.date, last: datetime.date) -> None:
        self.day = day
        self.first = first
        self.last = last
        super().__init__(f"no working-day calendar for {day.isoformat()}: the loaded calendar covers "
                         f"{first.isoformat()} to {last.isoformat()}; load the DGPA calendar for {day.year}")


def _entry_problem(entry: CalendarEntry) -> str | None:
    """What is wrong with one entry on its own, or None."""
    if not _FIRST_YEAR <= entry.day.year <= _LAST_YEAR:
        return f"year {entry.day.year} is outside {_FIRST_YEAR}–{_LAST_YEAR}"
    if entry.kind is DayKind.WORKDAY and entry.day.weekday() < _SATURDAY:
        return (f"{entry.day.isoformat()} is a {entry.day.strftime('%A')}: a make-up working day must be a "
                "Saturday or Sunday (weekdays are working days already)")
    if not entry.name or len(entry.name) > MAX_NAME_LENGTH:
        return f"the name must have 1 to {MAX_NAME_LENGTH} characters"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in entry.name):
        return "the name contains a control character"
    return None


def _years_problem(years: set[int]) -> str | None:
    if not years:
        return "the calendar lists no dates"
    missing = sorted(set(range(min(years), max(years) + 1)) - years)
    if missing:
        return (f"no dates for {', '.join(map(str, missing))}, between covered years: every year has holidays, "
                "so a year without rows is a missing year, not a year without holidays")
    return None


class WorkingDayCalendar:
    """Which dates are working days, for the consecutive years its entries cover.

    Built from entries (dates that differ from the plain week, plus named holidays); a year is covered when at
    least one entry falls in it, and covered years must be consecutive. Use :meth:`shipped` for the calendar
    that ships with the gateway and :meth:`from_csv` to load an operator's file.
    """

    def __init__(self, entries: Iterable[CalendarEntry]) -> None:
        by_day: dict[datetime.date, CalendarEntry] = {}
        for entry in entries:
            problem = _entry_problem(entry)
            if problem:
                raise ValueError(f"calendar entry {entry.day.isoformat()}: {problem}")
            if entry.day in by_day:
                raise ValueError(f"calendar entry {entry.day.isoformat()} is listed twice")
            by_day[entry.day] = entry
        years = {day.year for day in by_day}
        problem = _years_problem(years)
        if problem:
            raise ValueError(problem)
        self._entries = by_day
        self._first = datetime.date(min(years), 1, 1)
        self._last = datetime.date(max(years), 12, 31)

    @classmethod
    def from_csv(cls, text: str) -> WorkingDayCalendar:
        """Load a calendar file (header :data:`CSV_HEADER`, ``YYYY-MM-DD`` dates, ``#`` comment lines).

        Raises :class:`~gateway.errors.Refusal` with code ``calendar-file-invalid`` listing every problem found,
        each with its line and column; nothing else, whatever the text.
        """
        entries, problems = _parse(text)
        if problems:
            raise Refusal(problems)
        return cls(entries)

    @classmethod
    def shipped(cls) -> WorkingDayCalendar:
        """The calendar built from the package data, loaded once per process and shared."""
        return _shipped_calendar()

    @property
    def first_day(self) -> datetime.date:
        """1 January of the first covered year."""
        return self._first

    @property
    def last_day(self) -> datetime.date:
        """31 December of the last covered year."""
        return self._last

    @property
    def years(self) -> range:
        """The covered years (Gregorian)."""
        return range(self._first.year, self._last.year + 1)

    def entries(self) -> list[CalendarEntry]:
        """Every entry, in date order."""
        return [self._entries[day] for day in sorted(self._entries)]

    def covers(self, day: datetime.date) -> bool:
        return self._first <= day <= self._last

    def entry(self, day: datetime.date) -> CalendarEntry | None:
        """The file's entry for ``day`` (a holiday's name, a make-up working day), or None."""
        self._require(day)
        return self._entries.get(day)

    def is_working_day(self, day: datetime.date) -> bool:
        """Whether government offices work on ``day``. Raises :class:`DateOutsideCalendar` outside the calendar."""
        self._require(day)
        entry = self._entries.get(day)
        if entry is not None:
            return entry.kind is DayKind.WORKDAY
        return day.weekday() < _SATURDAY

    def next_working_day(self, day: datetime.date) -> datetime.date:
        """The first working day strictly after ``day``."""
        return self.add_working_days(day, 1)

    def add_working_days(self, day: datetime.date, n: int) -> datetime.date:
        """The ``n``-th working day after ``day``, ``day`` itself not counted; for ``n == 0``, the first working
        day on or after ``day``. Raises :class:`DateOutsideCalendar` if ``day`` or any day walked over lies
        outside the calendar, and ValueError for a negative ``n``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a whole number of working days, 0 or more: {n!r}")
        current = day
        if n == 0:
            while not self.is_working_day(current):
                current = self._after(current)
            return current
        self._require(current)
        while n:
            current = self._after(current)
            if self.is_working_day(current):
                n -= 1
        return current

    def business_day_of(self, received_at: datetime.datetime, *,
                        cutoff: datetime.time | None = DEFAULT_CUTOFF) -> datetime.date:
        """The working day a voucher received at ``received_at`` counts as received on: its Taipei date if that
        is a working day and the time is before ``cutoff`` (Taipei wall-clock; None for no cutoff), otherwise
        the next working day."""
        local = _taipei(received_at, "received_at")
        if cutoff is not None and (not isinstance(cutoff, datetime.time) or cutoff.tzinfo is not None):
            raise ValueError(f"cutoff must be a naive datetime.time (Taipei wall-clock time): {cutoff!r}")
        day = local.date()
        if self.is_working_day(day) and (cutoff is None or local.time() < cutoff):
            return day
        return self.next_working_day(day)

    def due_date(self, received_at: datetime.datetime, urgency: Urgency, *,
                 cutoff: datetime.time | None = DEFAULT_CUTOFF) -> datetime.date:
        """The Taipei date by which a voucher received at ``received_at`` must be handled (see module doc):
        the business day of receipt for urgent vouchers, the fifth working day after it for ordinary ones."""
        start = self.business_day_of(received_at, cutoff=cutoff)
        return self.add_working_days(start, DUE_WORKING_DAYS[urgency])

    def _after(self, day: datetime.date) -> datetime.date:
        nxt = day + _DAY  # day is covered, so at most 9998-12-31: no overflow
        self._require(nxt)
        return nxt

    def _require(self, day: datetime.date) -> None:
        if not isinstance(day, datetime.date) or isinstance(day, datetime.datetime):
            raise TypeError(f"expected a datetime.date, not {type(day).__name__}")
        if not self.covers(day):
            raise DateOutsideCalendar(day, self._first, self._last)


def is_overdue(due: datetime.date, now: datetime.datetime) -> bool:
    """Whether the due day has ended in Taipei at ``now`` (overdue from 00:00 Taipei on the day after ``due``)."""
    return _taipei(now, "now").date() > due


def _taipei(value: datetime.datetime, name: str) -> datetime.datetime:
    if not isinstance(value, datetime.datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must carry a UTC offset (an aware datetime)")
    return value.astimezone(TAIPEI)


def _uncommented(text: str) -> Iterator[str]:
    """The file's physical lines with comment lines blanked, so the csv module's line numbers stay true."""
    for line in io.StringIO(text, newline=""):
        yield "\n" if line.startswith("#") else line


def _parse(text: str) -> tuple[list[CalendarEntry], list[Problem]]:
    if not isinstance(text, str):
        raise TypeError(f"the calendar must be text, not {type(text).__name__}")
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark left by a spreadsheet export
    entries: list[CalendarEntry] = []
    problems: list[Problem] = []
    first_line: dict[datetime.date, int] = {}
    header_seen = False
    reader = csv.reader(_uncommented(text), strict=True)

    def problem(message: str, line: int | None, column: str | None = None) -> None:
        problems.append(Problem(FILE_INVALID, message, line, column))

    try:
        for row in reader:
            line = reader.line_num
            if not row:
                continue  # a blank or comment line
            if not header_seen:
                if tuple(row) != CSV_HEADER:
                    problem(f"the header must be {','.join(CSV_HEADER)}, not {','.join(row)[:200]}", line)
                    return [], problems  # without the right columns no row can be read reliably
                header_seen = True
                continue
            if len(row) != len(CSV_HEADER):
                problem(f"expected {len(CSV_HEADER)} fields ({','.join(CSV_HEADER)}), found {len(row)}", line)
                continue
            raw_day, raw_kind, name = row
            day = _parse_date(raw_day)
            if day is None:
                problem(f"not a date written YYYY-MM-DD: {raw_day[:40]!r}", line, "date")
            try:
                kind = DayKind(raw_kind)
            except ValueError:
                problem(f"kind must be holiday or workday, not {raw_kind[:40]!r}", line, "kind")
                kind = None
            if day is None or kind is None:
                continue
            entry = CalendarEntry(day, kind, name)
            message = _entry_problem(entry)
            if message:
                problem(message, line, "name" if message.startswith("the name") else "date")
                continue
            if day in first_line:
                problem(f"{day.isoformat()} is already listed on line {first_line[day]}", line, "date")
                continue
            first_line[day] = line
            entries.append(entry)
    except csv.Error as exc:
        problem(f"not valid CSV: {exc}", reader.line_num or 1)
        return [], problems
    if not header_seen:
        problem(f"the file is empty: expected the header {','.join(CSV_HEADER)}", 1)
        return [], problems
    if not problems:
        message = _years_problem({entry.day.year for entry in entries})
        if message:
            problem(message, None)
    return entries, problems


def _parse_date(text: str) -> datetime.date | None:
    if not _ISO_DATE.fullmatch(text):
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return None


@functools.cache
def _shipped_calendar() -> WorkingDayCalendar:
    # Bytes then decode, so line endings reach the csv module untouched; utf-8-sig drops a byte-order mark.
    text = resources.files("gateway").joinpath("data", SHIPPED_FILE).read_bytes().decode("utf-8-sig")
    return WorkingDayCalendar.from_csv(text)
