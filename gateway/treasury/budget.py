"""Allotted budgets (歲出分配預算) and the arithmetic of spending them.

Before paying a voucher the treasury checks that the budget subject still has allotted budget left. This module
is the model of that check: what an allotment is, how an allotment file is read, and how a ledger moves money
between three buckets per budget key (agency, fiscal year, budget subject):

- **reserved**: held for vouchers that passed the check and await payment;
- **consumed**: paid out;
- **remaining**: ``allotted - reserved - consumed``, what new vouchers may still reserve.

The rules, which the storage adapters enforce again in SQL and which the unit tests drive with a hypothesis
state machine:

1. Amounts are whole New Taiwan dollars (``int``), from 0 to :data:`MAX_AMOUNT`; never floats.
2. ``remaining`` is never negative: a reservation larger than it is refused (``budget-exceeded``), and a
   reloaded allotment may not fall below what is already reserved + consumed (``budget-allotment-too-low``).
3. Each voucher reference moves through ``reserved → consumed → released`` or ``reserved → released`` once.
   Every operation is idempotent per reference: the same reservation made twice counts once, a second
   ``consume`` or ``release`` changes nothing. A released reference is final; a re-remittance after a bank
   return reserves under a new reference (for example with an attempt number), so a late duplicate of the
   original request can never bring a dead reservation back.
4. Money is conserved: for every key, ``reserved`` is the sum of its references in state reserved and
   ``consumed`` the sum of those in state consumed.

:class:`BudgetLedger` is immutable: every operation returns a new ledger (or the same one when nothing
changes) and refuses without changing anything. It copies its maps on each change, which is fine for the
reference model and for tests; the service keeps the ledger in its store.
"""

from __future__ import annotations

import csv
import enum
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from gateway.errors import Problem, Refusal
from gateway.vouchers.model import Voucher

__all__ = [
    "CSV_HEADER",
    "MAX_AMOUNT",
    "Allotment",
    "BudgetBalance",
    "BudgetKey",
    "BudgetLedger",
    "Reservation",
    "ReservationState",
    "parse_allotments",
]

MAX_AMOUNT = 10**13
"""The largest amount the model accepts, NT$ 10 trillion (Taipei's whole yearly budget is about 2 × 10^11)."""

CSV_HEADER = ("agency", "fiscal_year", "budget_subject", "amount")
"""The allotment file's header: agency code, ROC fiscal year, 10-digit budget subject, whole NT$ amount."""

FILE_INVALID = "budget-file-invalid"
UNKNOWN = "budget-unknown"
EXCEEDED = "budget-exceeded"
ALLOTMENT_TOO_LOW = "budget-allotment-too-low"
RESERVATION_UNKNOWN = "budget-reservation-unknown"
RESERVATION_CONFLICT = "budget-reservation-conflict"

_AGENCY = re.compile(r"[0-9]{9}[A-Z0-9]")  # schemas/voucher.xsd, AgencyCodeType
_SUBJECT = re.compile(r"[0-9]{10}")  # schemas/voucher.xsd, BudgetSubjectType
_ROC_YEAR_TEXT = re.compile(r"[0-9]{2,3}")
_AMOUNT_TEXT = re.compile(r"0|[1-9][0-9]{0,13}")
MIN_FISCAL_YEAR, MAX_FISCAL_YEAR = 90, 999  # schemas/voucher.xsd, RocYearType


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _agency_problem(value: object) -> str | None:
    if isinstance(value, str) and _AGENCY.fullmatch(value):
        return None
    return f"an agency code is 9 digits and a digit or capital letter, e.g. 379000000A: {_show(value)}"


def _fiscal_year_problem(value: object) -> str | None:
    if _is_int(value) and MIN_FISCAL_YEAR <= value <= MAX_FISCAL_YEAR:
        return None
    return f"the fiscal year is a ROC year from {MIN_FISCAL_YEAR} to {MAX_FISCAL_YEAR} (115 = 2026): {_show(value)}"


def _subject_problem(value: object) -> str | None:
    if isinstance(value, str) and _SUBJECT.fullmatch(value):
        return None
    return f"a budget subject (款項目節) is 10 digits: {_show(value)}"


def _amount_problem(value: object) -> str | None:
    if _is_int(value) and 0 <= value <= MAX_AMOUNT:
        return None
    return f"an amount is whole NT dollars from 0 to {MAX_AMOUNT:,}: {_show(value)}"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class BudgetKey(NamedTuple):
    """What an allotment is for: one budget subject of one agency in one fiscal year."""

    agency: str
    fiscal_year: int  # ROC year
    budget_subject: str

    @classmethod
    def of(cls, voucher: Voucher) -> BudgetKey:
        """The key a voucher spends from."""
        return cls(voucher.agency_code, voucher.fiscal_year, voucher.budget_subject)

    def __str__(self) -> str:
        return f"{self.agency}/{self.fiscal_year}/{self.budget_subject}"


@dataclass(frozen=True)
class Allotment:
    """The allotted budget of one key. ``line`` is where a parsed file said so (not part of equality)."""

    agency: str
    fiscal_year: int
    budget_subject: str
    amount: int
    line: int | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for problem in (_agency_problem(self.agency), _fiscal_year_problem(self.fiscal_year),
                        _subject_problem(self.budget_subject), _amount_problem(self.amount)):
            if problem:
                raise ValueError(problem)

    @property
    def key(self) -> BudgetKey:
        return BudgetKey(self.agency, self.fiscal_year, self.budget_subject)


@dataclass(frozen=True)
class BudgetBalance:
    """Where one key's allotment stands. Construction checks the invariants, so a bad balance cannot exist."""

    allotted: int
    reserved: int = 0
    consumed: int = 0

    def __post_init__(self) -> None:
        for name in ("allotted", "reserved", "consumed"):
            value = getattr(self, name)
            if not _is_int(value) or not 0 <= value <= MAX_AMOUNT:
                raise ValueError(f"{name} must be whole NT dollars from 0 to {MAX_AMOUNT:,}: {value!r}")
        if self.reserved + self.consumed > self.allotted:
            raise ValueError(f"reserved {self.reserved:,} + consumed {self.consumed:,} "
                             f"exceed allotted {self.allotted:,}")

    @property
    def committed(self) -> int:
        """Reserved plus consumed: what an allotment may not be lowered below."""
        return self.reserved + self.consumed

    @property
    def remaining(self) -> int:
        """What new reservations may still take: ``allotted - reserved - consumed``, never negative."""
        return self.allotted - self.reserved - self.consumed


class ReservationState(enum.Enum):
    RESERVED = "reserved"
    CONSUMED = "consumed"  # paid
    RELEASED = "released"  # rejected or returned before payment, or returned by the bank after it; final


@dataclass(frozen=True)
class Reservation:
    """The money one voucher reference holds on one key."""

    voucher_ref: str
    key: BudgetKey
    amount: int
    state: ReservationState

    def __post_init__(self) -> None:
        _check_ref(self.voucher_ref)
        if not _is_int(self.amount) or not 0 < self.amount <= MAX_AMOUNT:
            raise ValueError(f"a reservation is whole NT dollars from 1 to {MAX_AMOUNT:,}: {self.amount!r}")
        if not isinstance(self.key, BudgetKey) or not isinstance(self.state, ReservationState):
            raise TypeError("a reservation needs a BudgetKey and a ReservationState")


class BudgetLedger:
    """Allotments, and the reservations made against them. Immutable; operations return a new ledger."""

    __slots__ = ("_balances", "_reservations")

    def __init__(self, balances: Mapping[BudgetKey, BudgetBalance] | None = None,
                 reservations: Mapping[str, Reservation] | None = None) -> None:
        """A ledger from stored state; checks that every reservation's key has a balance and that each
        balance's reserved and consumed are the sums of its reservations."""
        balances = dict(balances or {})
        reservations = dict(reservations or {})
        sums: dict[BudgetKey, list[int]] = {key: [0, 0] for key in balances}
        for ref, reservation in reservations.items():
            if ref != reservation.voucher_ref:
                raise ValueError(f"reservation {reservation.voucher_ref!r} is filed under {ref!r}")
            if reservation.key not in sums:
                raise ValueError(f"reservation {ref!r} is on {reservation.key}, which has no allotment")
            if reservation.state is ReservationState.RESERVED:
                sums[reservation.key][0] += reservation.amount
            elif reservation.state is ReservationState.CONSUMED:
                sums[reservation.key][1] += reservation.amount
        for key, balance in balances.items():
            if [balance.reserved, balance.consumed] != sums[key]:
                raise ValueError(f"{key}: balance {balance} does not match its reservations "
                                 f"(reserved {sums[key][0]:,}, consumed {sums[key][1]:,})")
        self._balances = balances
        self._reservations = reservations

    @classmethod
    def _made(cls, balances: dict[BudgetKey, BudgetBalance], reservations: dict[str, Reservation]) -> BudgetLedger:
        # For operations, which keep the invariants by construction; BudgetBalance still checks each balance.
        ledger = cls.__new__(cls)
        ledger._balances = balances
        ledger._reservations = reservations
        return ledger

    @classmethod
    def from_allotments(cls, allotments: Iterable[Allotment]) -> BudgetLedger:
        """A ledger with these allotments and no reservations."""
        return cls().reload(allotments)

    @property
    def balances(self) -> Mapping[BudgetKey, BudgetBalance]:
        return MappingProxyType(self._balances)

    @property
    def reservations(self) -> Mapping[str, Reservation]:
        return MappingProxyType(self._reservations)

    def balance(self, key: BudgetKey) -> BudgetBalance | None:
        """The key's balance, or None when it has no allotment."""
        return self._balances.get(key)

    def reservation(self, voucher_ref: str) -> Reservation | None:
        return self._reservations.get(voucher_ref)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BudgetLedger):
            return NotImplemented
        return self._balances == other._balances and self._reservations == other._reservations

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BudgetLedger({len(self._balances)} keys, {len(self._reservations)} reservations)"

    def reserve(self, key: BudgetKey, voucher_ref: str, amount: int) -> BudgetLedger:
        """Hold ``amount`` of ``key``'s remaining budget for ``voucher_ref``.

        The same reservation again (same key and amount, reserved or already consumed) changes nothing.
        Refuses ``budget-unknown`` for a key without allotment, ``budget-exceeded`` (saying what remains) when
        the amount is more than remains, and ``budget-reservation-conflict`` when the reference already holds
        another reservation or was released.
        """
        reservation = Reservation(voucher_ref, key, amount, ReservationState.RESERVED)  # checks the arguments
        existing = self._reservations.get(voucher_ref)
        if existing is not None:
            if existing.state is ReservationState.RELEASED:
                raise Refusal(RESERVATION_CONFLICT, f"{voucher_ref} was released; a new attempt needs a new reference")
            if (existing.key, existing.amount) != (key, amount):
                raise Refusal(RESERVATION_CONFLICT, f"{voucher_ref} already holds NT$ {existing.amount:,} on "
                              f"{existing.key}, not NT$ {amount:,} on {key}")
            return self
        balance = self._balances.get(key)
        if balance is None:
            raise Refusal(UNKNOWN, f"there is no allotted budget for {key}")
        if amount > balance.remaining:
            raise Refusal(EXCEEDED, f"NT$ {amount:,} is more than the NT$ {balance.remaining:,} that remains of the "
                          f"allotment for {key} (allotted {balance.allotted:,}, reserved {balance.reserved:,}, "
                          f"paid {balance.consumed:,})")
        new_balance = BudgetBalance(balance.allotted, balance.reserved + amount, balance.consumed)
        return self._made({**self._balances, key: new_balance}, {**self._reservations, voucher_ref: reservation})

    def consume(self, voucher_ref: str) -> BudgetLedger:
        """The voucher was paid: its reservation becomes consumed. Again changes nothing. Refuses
        ``budget-reservation-unknown`` for a reference never reserved and ``budget-reservation-conflict`` for a
        released one."""
        reservation = self._existing(voucher_ref)
        if reservation.state is ReservationState.CONSUMED:
            return self
        if reservation.state is ReservationState.RELEASED:
            raise Refusal(RESERVATION_CONFLICT, f"{voucher_ref} was released and cannot be paid")
        balance = self._balances[reservation.key]
        new_balance = BudgetBalance(balance.allotted, balance.reserved - reservation.amount,
                                    balance.consumed + reservation.amount)
        return self._changed(reservation, ReservationState.CONSUMED, new_balance)

    def release(self, voucher_ref: str) -> BudgetLedger:
        """Give the reference's money back to the allotment: a reservation on rejection or return before
        payment, a consumption on a bank return (退匯) after it. Again changes nothing. Refuses
        ``budget-reservation-unknown`` for a reference never reserved."""
        reservation = self._existing(voucher_ref)
        if reservation.state is ReservationState.RELEASED:
            return self
        balance = self._balances[reservation.key]
        if reservation.state is ReservationState.RESERVED:
            new_balance = BudgetBalance(balance.allotted, balance.reserved - reservation.amount, balance.consumed)
        else:
            new_balance = BudgetBalance(balance.allotted, balance.reserved, balance.consumed - reservation.amount)
        return self._changed(reservation, ReservationState.RELEASED, new_balance)

    def reload(self, allotments: Iterable[Allotment]) -> BudgetLedger:
        """Apply an allotment file: each listed key gets the listed amount (new keys are added); keys the file
        does not list keep theirs (to withdraw one, list it with 0). All or nothing: refuses
        ``budget-allotment-too-low`` for every line that would put an allotment below what its key has
        reserved + consumed, and ``budget-file-invalid`` for a key listed twice."""
        balances = dict(self._balances)
        problems: list[Problem] = []
        seen: dict[BudgetKey, Allotment] = {}
        for allotment in allotments:
            if not isinstance(allotment, Allotment):
                raise TypeError(f"expected an Allotment, not {type(allotment).__name__}")
            key = allotment.key
            if key in seen:
                first = seen[key].line
                problems.append(Problem(FILE_INVALID, f"{key} is listed twice"
                                        + (f" (first on line {first})" if first else ""), allotment.line, "agency"))
                continue
            seen[key] = allotment
            balance = balances.get(key)
            if balance is None:
                balances[key] = BudgetBalance(allotment.amount)
            elif allotment.amount < balance.committed:
                problems.append(Problem(ALLOTMENT_TOO_LOW, f"the allotment for {key} cannot be lowered to NT$ "
                                        f"{allotment.amount:,}: NT$ {balance.committed:,} is already reserved "
                                        f"({balance.reserved:,}) or paid ({balance.consumed:,})",
                                        allotment.line, "amount"))
            else:
                balances[key] = BudgetBalance(allotment.amount, balance.reserved, balance.consumed)
        if problems:
            raise Refusal(problems)
        return self._made(balances, dict(self._reservations))

    def _existing(self, voucher_ref: str) -> Reservation:
        _check_ref(voucher_ref)
        reservation = self._reservations.get(voucher_ref)
        if reservation is None:
            raise Refusal(RESERVATION_UNKNOWN, f"{voucher_ref} holds no reservation")
        return reservation

    def _changed(self, reservation: Reservation, state: ReservationState, balance: BudgetBalance) -> BudgetLedger:
        moved = Reservation(reservation.voucher_ref, reservation.key, reservation.amount, state)
        return self._made({**self._balances, reservation.key: balance},
                          {**self._reservations, reservation.voucher_ref: moved})


def _check_ref(voucher_ref: object) -> None:
    if not isinstance(voucher_ref, str) or not voucher_ref:
        raise ValueError(f"a voucher reference is a non-empty string: {voucher_ref!r}")


def parse_allotments(csv_text: str) -> list[Allotment]:
    """Read an allotment file: header :data:`CSV_HEADER`, one key per line, e.g.
    ``379000001A,115,0123456789,1500000``.

    Strict: no spaces around values, ROC years, amounts as plain digits (no decimals, signs or separators),
    each key once, at least one line. A leading byte-order mark is ignored; blank lines are skipped. Raises
    :class:`~gateway.errors.Refusal` with code ``budget-file-invalid`` listing every bad line with its line
    number and column, and nothing else, whatever the text.
    """
    if not isinstance(csv_text, str):
        raise TypeError(f"the allotment file must be text, not {type(csv_text).__name__}")
    if csv_text.startswith("\ufeff"):
        csv_text = csv_text[1:]
    problems: list[Problem] = []
    allotments: list[Allotment] = []
    first_line: dict[BudgetKey, int] = {}
    header_seen = False
    reader = csv.reader(io.StringIO(csv_text, newline=""), strict=True)

    def problem(message: str, line: int | None, column: str | None = None) -> None:
        problems.append(Problem(FILE_INVALID, message, line, column))

    try:
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if not header_seen:
                if tuple(row) != CSV_HEADER:
                    problem(f"the header must be {','.join(CSV_HEADER)}, not {','.join(row)[:200]}", line)
                    raise Refusal(problems)
                header_seen = True
                continue
            if len(row) != len(CSV_HEADER):
                problem(f"expected {len(CSV_HEADER)} fields ({','.join(CSV_HEADER)}), found {len(row)}", line)
                continue
            allotment = _allotment(row, line, problem)
            if allotment is None:
                continue
            if allotment.key in first_line:
                problem(f"{allotment.key} is already listed on line {first_line[allotment.key]}", line, "agency")
                continue
            first_line[allotment.key] = line
            allotments.append(allotment)
    except csv.Error as exc:
        problem(f"not valid CSV: {exc}", reader.line_num or 1)
    if not header_seen and not problems:
        problem(f"the file is empty: expected the header {','.join(CSV_HEADER)}", 1)
    elif not allotments and not problems:
        problem("the file lists no allotments", reader.line_num or 1)
    if problems:
        raise Refusal(problems)
    return allotments


def _allotment(row: list[str], line: int, problem) -> Allotment | None:
    agency, year_text, subject, amount_text = row
    bad = False
    message = _agency_problem(agency)
    if message:
        problem(message, line, "agency")
        bad = True
    fiscal_year = None
    if _ROC_YEAR_TEXT.fullmatch(year_text):
        fiscal_year = int(year_text)
    message = _fiscal_year_problem(fiscal_year if fiscal_year is not None else year_text)
    if message:
        if re.fullmatch(r"[0-9]{4}", year_text):
            message += " (write the ROC year: Gregorian year minus 1911)"
        problem(message, line, "fiscal_year")
        bad = True
    message = _subject_problem(subject)
    if message:
        problem(message, line, "budget_subject")
        bad = True
    amount = int(amount_text) if _AMOUNT_TEXT.fullmatch(amount_text) else None
    message = _amount_text_problem(amount_text) if amount is None else _amount_problem(amount)
    if message:
        problem(message, line, "amount")
        bad = True
    if bad:
        return None
    return Allotment(agency, fiscal_year, subject, amount, line=line)


def _amount_text_problem(text: str) -> str:
    shown = _show(text)
    if text.startswith("-"):
        return f"an amount cannot be negative: {shown}"
    if re.fullmatch(r"[0-9]+[.][0-9]*", text):
        return f"an amount is whole NT dollars, without decimals: {shown}"
    if re.fullmatch(r"[0-9]{1,3}(,[0-9]{3})+", text):
        return f"write an amount as plain digits, without thousands separators: {shown}"
    if re.fullmatch(r"0[0-9]+", text):
        return f"write an amount without leading zeros: {shown}"
    if re.fullmatch(r"[0-9]+", text):
        return f"an amount is at most NT$ {MAX_AMOUNT:,}: {shown}"
    return f"an amount is whole NT dollars written as digits: {shown}"
