"""The working-day calendar: the shipped DGPA data, make-up working days, deadlines, and refusing bad files."""

from __future__ import annotations

import csv
import datetime
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import Refusal
from gateway.vouchers.model import Urgency
from gateway.workflow.working_days import (
    CSV_HEADER,
    DEFAULT_CUTOFF,
    DateOutsideCalendar,
    DayKind,
    WorkingDayCalendar,
    is_overdue,
)

D = datetime.date
TPE = datetime.timezone(datetime.timedelta(hours=8))
UTC = datetime.timezone.utc
SHIPPED = WorkingDayCalendar.shipped()


def at(year: int, month: int, day: int, hour: int = 10, minute: int = 0, second: int = 0,
       tz: datetime.tzinfo = TPE) -> datetime.datetime:
    return datetime.datetime(year, month, day, hour, minute, second, tzinfo=tz)


def days_of(year: int) -> list[datetime.date]:
    start = D(year, 1, 1)
    return [start + datetime.timedelta(days=i) for i in range((D(year + 1, 1, 1) - start).days)]


# --- the shipped calendar ----------------------------------------------------------------------------------


def _raw_rows() -> list[list[str]]:
    """The shipped file read independently of the module under test (comment lines dropped)."""
    text = resources.files("gateway").joinpath("data", "tw-public-holidays.csv").read_text("utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    rows = list(csv.reader(lines))
    assert tuple(rows[0]) == CSV_HEADER
    return rows[1:]


def test_shipped_calendar_covers_2026_and_2027_only() -> None:
    assert SHIPPED.years == range(2026, 2028)
    assert (SHIPPED.first_day, SHIPPED.last_day) == (D(2026, 1, 1), D(2027, 12, 31))
    assert WorkingDayCalendar.shipped() is SHIPPED  # loaded once


def test_shipped_file_has_one_row_per_date_and_only_holidays() -> None:
    rows = _raw_rows()
    assert len({r[0] for r in rows}) == len(rows) == 46
    assert {r[1] for r in rows} == {"holiday"}  # since the 2025 rules there are no make-up working days


def test_2026_has_the_120_days_off_the_executive_yuan_announced() -> None:
    assert sum(not SHIPPED.is_working_day(d) for d in days_of(2026)) == 120


def test_2027_has_121_days_off() -> None:
    assert sum(not SHIPPED.is_working_day(d) for d in days_of(2027)) == 121


# The weekday holidays of 2026 as the Executive Yuan's letter of 2025-06-13 describes them, written out here
# independently of the data file.
WEEKDAY_HOLIDAYS_2026 = {
    D(2026, 1, 1),  # 開國紀念日
    D(2026, 2, 16), D(2026, 2, 17), D(2026, 2, 18), D(2026, 2, 19),  # 除夕, 春節
    D(2026, 2, 20),  # 除夕前一日 (Sunday 15th) observed on 初四
    D(2026, 2, 27),  # 和平紀念日 on Saturday
    D(2026, 4, 3), D(2026, 4, 6),  # 兒童節 on Saturday, 清明節 on Sunday
    D(2026, 5, 1),  # 勞動節, now for government offices too
    D(2026, 6, 19),  # 端午節
    D(2026, 9, 25), D(2026, 9, 28),  # 中秋節, 教師節
    D(2026, 10, 9),  # 國慶日 on Saturday
    D(2026, 10, 26),  # 光復節 on Sunday
    D(2026, 12, 25),  # 行憲紀念日
}


def test_2026_weekday_holidays_match_the_announcement() -> None:
    off_weekdays = {d for d in days_of(2026) if d.weekday() < 5 and not SHIPPED.is_working_day(d)}
    assert off_weekdays == WEEKDAY_HOLIDAYS_2026


def test_2026_lunar_new_year_is_nine_days_off_from_the_14th_to_the_22nd() -> None:
    span = [D(2026, 2, 14) + datetime.timedelta(days=i) for i in range(9)]
    assert not any(SHIPPED.is_working_day(d) for d in span)
    assert SHIPPED.is_working_day(D(2026, 2, 13)) and SHIPPED.is_working_day(D(2026, 2, 23))


def test_2027_bridges_to_the_2028_new_year() -> None:
    # 2028-01-01 is a Saturday, observed on Friday 2027-12-31; a Thursday holiday gets no bridge.
    assert not SHIPPED.is_working_day(D(2027, 12, 31))
    assert SHIPPED.entry(D(2027, 12, 31)).name.startswith("補假")
    assert SHIPPED.is_working_day(D(2026, 12, 31))


def test_holiday_names_come_from_the_file() -> None:
    entry = SHIPPED.entry(D(2026, 9, 28))
    assert entry is not None and entry.kind is DayKind.HOLIDAY and entry.name == "孔子誕辰紀念日/教師節"
    assert SHIPPED.entry(D(2026, 9, 29)) is None


@pytest.mark.parametrize("day", [D(2025, 12, 31), D(2028, 1, 1), D(1999, 6, 1)])
def test_dates_outside_the_calendar_are_refused_not_guessed(day: datetime.date) -> None:
    with pytest.raises(DateOutsideCalendar) as info:
        SHIPPED.is_working_day(day)
    assert str(day.year) in str(info.value) and info.value.day == day


def test_a_deadline_running_past_the_calendar_raises() -> None:
    # The 5th working day after 27 December 2027 lies in 2028, which the shipped calendar does not know.
    with pytest.raises(DateOutsideCalendar):
        SHIPPED.due_date(at(2027, 12, 27), Urgency.ORDINARY)
    with pytest.raises(DateOutsideCalendar):
        SHIPPED.add_working_days(D(2027, 12, 30), 1)  # the 31st is a holiday, the next day is 2028
    assert SHIPPED.due_date(at(2027, 12, 27), Urgency.URGENT) == D(2027, 12, 27)


def test_a_datetime_is_not_taken_for_a_date() -> None:
    with pytest.raises(TypeError):
        SHIPPED.is_working_day(at(2026, 3, 2))  # type: ignore[arg-type]


# --- make-up working days and operator files ------------------------------------------------------------------

# 2025 as first published: the day before Lunar New Year's Eve (Mon 27 Jan) off, made up on Saturday 8 Feb.
CALENDAR_2025 = """\ufeff# a test calendar
date,kind,name
2025-01-01,holiday,開國紀念日
2025-01-27,holiday,調整放假
2025-01-28,holiday,農曆除夕
2025-01-29,holiday,春節
2025-01-30,holiday,春節
2025-01-31,holiday,春節
# the make-up day
2025-02-08,workday,補行上班
2025-02-28,holiday,和平紀念日
"""


@pytest.fixture
def cal2025() -> WorkingDayCalendar:
    return WorkingDayCalendar.from_csv(CALENDAR_2025)


def test_a_make_up_saturday_is_a_working_day(cal2025: WorkingDayCalendar) -> None:
    assert cal2025.is_working_day(D(2025, 2, 8))
    assert not cal2025.is_working_day(D(2025, 2, 9))  # the Sunday after is not
    assert cal2025.add_working_days(D(2025, 2, 7), 1) == D(2025, 2, 8)
    assert cal2025.due_date(at(2025, 2, 8, 9), Urgency.URGENT) == D(2025, 2, 8)
    assert cal2025.years == range(2025, 2026)


def test_a_long_holiday_is_skipped(cal2025: WorkingDayCalendar) -> None:
    # Friday 24 January: the next working day is Monday 3 February, after nine days off.
    assert cal2025.next_working_day(D(2025, 1, 24)) == D(2025, 2, 3)


def test_crlf_line_endings_and_no_comments_load_the_same(cal2025: WorkingDayCalendar) -> None:
    plain = "\r\n".join(line for line in CALENDAR_2025.lstrip("\ufeff").splitlines() if not line.startswith("#"))
    assert WorkingDayCalendar.from_csv(plain).entries() == cal2025.entries()


def refused(text: str) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(Refusal) as info:
        WorkingDayCalendar.from_csv(text)
    assert {p.code for p in info.value.problems} == {"calendar-file-invalid"}
    return [(p.line, p.path, p.message) for p in info.value.problems]


def test_a_wrong_header_is_refused_with_its_line() -> None:
    [(line, _, message)] = refused("# note\nday,kind,name\n2026-01-01,holiday,x\n")
    assert line == 2 and "date,kind,name" in message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_an_empty_file_is_refused(text: str) -> None:
    [(_, _, message)] = refused(text)
    assert "empty" in message


def test_a_file_without_dates_is_refused() -> None:
    [(_, _, message)] = refused("date,kind,name\n")
    assert "no dates" in message


def test_every_bad_line_is_reported_with_line_and_column() -> None:
    text = ("date,kind,name\n"
            "2026-01-01,holiday,開國紀念日\n"
            "2026-02-30,holiday,no such day\n"  # 3
            "20260302,holiday,compact date\n"  # 4
            "2026-03-03,day-off,unknown kind\n"  # 5
            "2026-03-04,workday,a Wednesday\n"  # 6
            "2026-01-01,holiday,again\n"  # 7
            "2026-03-05,holiday\n"  # 8
            "2026-03-06,holiday,\n")  # 9
    found = [(line, column) for line, column, _ in refused(text)]
    assert found == [(3, "date"), (4, "date"), (5, "kind"), (6, "date"), (7, "date"), (8, None), (9, "name")]


def test_a_duplicate_names_the_first_line() -> None:
    [(line, _, message)] = refused("date,kind,name\n2026-01-01,holiday,a\n2026-01-01,holiday,b\n")
    assert line == 3 and "line 2" in message


def test_a_missing_year_between_covered_years_is_refused() -> None:
    [(_, _, message)] = refused("date,kind,name\n2026-01-01,holiday,a\n2028-01-01,holiday,b\n")
    assert "2027" in message


def test_broken_quoting_is_refused_with_its_line() -> None:
    [(line, _, message)] = refused('date,kind,name\n2026-01-01,holiday,a\n2026-01-02,holiday,"open\n')
    assert "CSV" in message and line >= 3


def test_a_control_character_in_a_name_is_refused() -> None:
    [(line, column, _)] = refused('date,kind,name\n2026-01-01,holiday,"two\nlines"\n')
    assert (line, column) == (3, "name")


def test_the_constructor_checks_entries_too() -> None:
    from gateway.workflow.working_days import CalendarEntry
    with pytest.raises(ValueError):
        WorkingDayCalendar([CalendarEntry(D(2026, 3, 4), DayKind.WORKDAY, "a Wednesday")])
    with pytest.raises(ValueError):
        WorkingDayCalendar([])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789-,#\"\r\n\ufeff\x00 abdehiklmnoryw")) | st.characters(),
               max_size=200))
def test_the_parser_only_ever_refuses(text: str) -> None:
    try:
        calendar = WorkingDayCalendar.from_csv("date,kind,name\n" + text)
    except Refusal as refusal:
        assert all(p.code == "calendar-file-invalid" for p in refusal.problems)
    else:
        assert len(calendar.years) >= 1


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_the_parser_only_ever_refuses_arbitrary_text(text: str) -> None:
    try:
        WorkingDayCalendar.from_csv(text)
    except Refusal as refusal:
        assert refusal.problems and all(p.line is None or p.line >= 1 for p in refusal.problems)


# --- adding working days ---------------------------------------------------------------------------------------


def test_add_working_days_examples() -> None:
    assert SHIPPED.add_working_days(D(2026, 2, 13), 1) == D(2026, 2, 23)  # over Lunar New Year
    assert SHIPPED.add_working_days(D(2026, 3, 2), 5) == D(2026, 3, 9)
    assert SHIPPED.add_working_days(D(2026, 3, 2), 0) == D(2026, 3, 2)
    assert SHIPPED.add_working_days(D(2026, 2, 14), 0) == D(2026, 2, 23)  # rolls forward off a holiday
    assert SHIPPED.add_working_days(D(2026, 2, 14), 1) == D(2026, 2, 23)  # the first working day after it


@pytest.mark.parametrize("n", [-1, 1.0, True])
def test_add_working_days_refuses_odd_counts(n) -> None:
    with pytest.raises(ValueError):
        SHIPPED.add_working_days(D(2026, 3, 2), n)


# Days and counts that stay within the shipped calendar: 60 working days are well under four months.
days_2026_27 = st.dates(min_value=D(2026, 1, 1), max_value=D(2027, 8, 31))
counts = st.integers(min_value=0, max_value=60)


RAW_KINDS = {D.fromisoformat(r[0]): r[1] for r in _raw_rows()}


def working_per_file(day: datetime.date) -> bool:
    """Whether a day is a working day, worked out from the raw file rather than the module."""
    return RAW_KINDS[day] == "workday" if day in RAW_KINDS else day.weekday() < 5


@settings(max_examples=200, deadline=None)
@given(days_2026_27)
def test_is_working_day_agrees_with_the_raw_file(day: datetime.date) -> None:
    assert SHIPPED.is_working_day(day) == working_per_file(day)


@settings(max_examples=300, deadline=None)
@given(days_2026_27, counts)
def test_add_working_days_lands_on_a_working_day_n_working_days_on(day: datetime.date, n: int) -> None:
    result = SHIPPED.add_working_days(day, n)
    assert SHIPPED.is_working_day(result)
    assert result >= day
    walked = [day + datetime.timedelta(days=i) for i in range((result - day).days + 1)]
    if n == 0:  # the first working day on or after the start
        assert not any(SHIPPED.is_working_day(d) for d in walked[:-1])
    else:  # the start not counted, exactly n working days up to and including the result
        assert result > day and sum(SHIPPED.is_working_day(d) for d in walked[1:]) == n


@settings(max_examples=300, deadline=None)
@given(days_2026_27, counts, counts)
def test_add_working_days_is_monotonic_in_the_count(day: datetime.date, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert SHIPPED.add_working_days(day, low) <= SHIPPED.add_working_days(day, high)
    if 1 <= low < high:
        assert SHIPPED.add_working_days(day, low) < SHIPPED.add_working_days(day, high)


@settings(max_examples=300, deadline=None)
@given(days_2026_27, days_2026_27, counts)
def test_add_working_days_is_monotonic_in_the_start(d1: datetime.date, d2: datetime.date, n: int) -> None:
    early, late = sorted((d1, d2))
    assert SHIPPED.add_working_days(early, n) <= SHIPPED.add_working_days(late, n)


@settings(max_examples=300, deadline=None)
@given(days_2026_27, st.integers(1, 30), st.integers(1, 30))
def test_add_working_days_composes(day: datetime.date, a: int, b: int) -> None:
    assert SHIPPED.add_working_days(SHIPPED.add_working_days(day, a), b) == SHIPPED.add_working_days(day, a + b)


# --- due dates ---------------------------------------------------------------------------------------------------


def test_urgent_is_due_the_same_working_day_before_the_cutoff() -> None:
    assert DEFAULT_CUTOFF == datetime.time(15, 30)
    assert SHIPPED.due_date(at(2026, 3, 2, 15, 29, 59), Urgency.URGENT) == D(2026, 3, 2)


def test_at_or_after_the_cutoff_counts_from_the_next_working_day() -> None:
    assert SHIPPED.due_date(at(2026, 3, 2, 15, 30), Urgency.URGENT) == D(2026, 3, 3)
    assert SHIPPED.due_date(at(2026, 3, 6, 18), Urgency.URGENT) == D(2026, 3, 9)  # Friday evening → Monday
    assert SHIPPED.due_date(at(2026, 3, 2, 15, 30), Urgency.ORDINARY) == D(2026, 3, 10)


def test_a_cutoff_can_be_chosen_or_switched_off() -> None:
    assert SHIPPED.due_date(at(2026, 3, 2, 12), Urgency.URGENT, cutoff=datetime.time(12)) == D(2026, 3, 3)
    assert SHIPPED.due_date(at(2026, 3, 2, 23, 59), Urgency.URGENT, cutoff=None) == D(2026, 3, 2)
    with pytest.raises(ValueError):
        SHIPPED.due_date(at(2026, 3, 2), Urgency.URGENT, cutoff=datetime.time(12, tzinfo=TPE))


def test_ordinary_is_due_the_fifth_working_day_after_receipt() -> None:
    assert SHIPPED.due_date(at(2026, 3, 2), Urgency.ORDINARY) == D(2026, 3, 9)
    # Received Thursday 12 February 2026: 13 Feb, then 23, 24, 25, 26 Feb after Lunar New Year.
    assert SHIPPED.due_date(at(2026, 2, 12), Urgency.ORDINARY) == D(2026, 2, 26)


def test_received_on_a_holiday_counts_from_the_next_working_day() -> None:
    # Saturday 28 February 2026 (和平紀念日): the office opens on Monday 2 March.
    assert SHIPPED.business_day_of(at(2026, 2, 28, 9)) == D(2026, 3, 2)
    assert SHIPPED.due_date(at(2026, 2, 28, 9), Urgency.URGENT) == D(2026, 3, 2)
    assert SHIPPED.due_date(at(2026, 2, 28, 9), Urgency.ORDINARY) == D(2026, 3, 9)
    # Friday 27 February is an observed holiday (補假): the same.
    assert SHIPPED.due_date(at(2026, 2, 27, 9), Urgency.URGENT) == D(2026, 3, 2)


def test_business_dates_are_taipei_dates() -> None:
    # 20:00 UTC on Sunday 1 March is 04:00 Monday in Taipei: a working day, before the cutoff.
    assert SHIPPED.due_date(at(2026, 3, 1, 20, tz=UTC), Urgency.URGENT) == D(2026, 3, 2)
    # 07:00 UTC on Monday is 15:00 in Taipei (before the cutoff); 08:00 UTC is 16:00 (after it).
    assert SHIPPED.due_date(at(2026, 3, 2, 7, tz=UTC), Urgency.URGENT) == D(2026, 3, 2)
    assert SHIPPED.due_date(at(2026, 3, 2, 8, tz=UTC), Urgency.URGENT) == D(2026, 3, 3)


def test_a_naive_receipt_time_is_refused() -> None:
    with pytest.raises(ValueError):
        SHIPPED.due_date(datetime.datetime(2026, 3, 2, 10), Urgency.URGENT)


received = st.datetimes(min_value=datetime.datetime(2026, 1, 1), max_value=datetime.datetime(2027, 9, 30),
                        timezones=st.sampled_from([TPE, UTC, datetime.timezone(datetime.timedelta(hours=-5))]))


@settings(max_examples=300, deadline=None)
@given(received)
def test_due_dates_are_working_days_on_or_after_receipt(received_at: datetime.datetime) -> None:
    local_day = received_at.astimezone(TPE).date()
    start = SHIPPED.business_day_of(received_at)
    urgent = SHIPPED.due_date(received_at, Urgency.URGENT)
    ordinary = SHIPPED.due_date(received_at, Urgency.ORDINARY)
    assert local_day <= start == urgent < ordinary
    assert SHIPPED.is_working_day(urgent) and SHIPPED.is_working_day(ordinary)
    assert sum(SHIPPED.is_working_day(start + datetime.timedelta(days=i))
               for i in range(1, (ordinary - start).days + 1)) == 5
    assert not is_overdue(urgent, received_at)


# --- overdue -----------------------------------------------------------------------------------------------------


def test_overdue_after_the_end_of_the_due_day_in_taipei() -> None:
    due = D(2026, 3, 9)
    assert not is_overdue(due, at(2026, 3, 9, 23, 59, 59))
    assert is_overdue(due, at(2026, 3, 10, 0, 0, 0))
    assert not is_overdue(due, at(2026, 3, 9, 15, 59, 59, tz=UTC))  # 23:59:59 in Taipei
    assert is_overdue(due, at(2026, 3, 9, 16, 0, 0, tz=UTC))  # midnight in Taipei
    assert not is_overdue(due, at(2026, 3, 1))


def test_overdue_needs_an_aware_time() -> None:
    with pytest.raises(ValueError):
        is_overdue(D(2026, 3, 9), datetime.datetime(2026, 3, 10, 12))
