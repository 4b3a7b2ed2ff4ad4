"""Allotted budgets: reading allotment files, and the ledger's reserve / consume / release / reload arithmetic."""

from __future__ import annotations

import csv
import datetime
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from gateway.errors import Refusal
from gateway.treasury.budget import (
    CSV_HEADER,
    MAX_AMOUNT,
    Allotment,
    BudgetBalance,
    BudgetKey,
    BudgetLedger,
    Reservation,
    ReservationState,
    parse_allotments,
)
from gateway.vouchers.model import (
    DocumentType,
    ObjectClass,
    PaymentMethod,
    PaymentMethodKind,
    Urgency,
    Voucher,
)

AGENCY = "379000001A"
KEY = BudgetKey(AGENCY, 115, "0123456789")
OTHER = BudgetKey(AGENCY, 115, "9876543210")
NOWHERE = BudgetKey("379000002A", 115, "0123456789")


def refusal_of(call, *args) -> Refusal:
    with pytest.raises(Refusal) as info:
        call(*args)
    return info.value


# --- allotments and the file ------------------------------------------------------------------------------------


def test_an_allotment_file_is_read_in_order_with_line_numbers() -> None:
    text = ("\ufeffagency,fiscal_year,budget_subject,amount\r\n"
            "379000001A,115,0123456789,1500000\r\n"
            "\r\n"
            "379000001A,115,9876543210,0\r\n"
            f"379000002A,116,0123456789,{MAX_AMOUNT}\r\n")
    allotments = parse_allotments(text)
    assert allotments == [Allotment(AGENCY, 115, "0123456789", 1_500_000), Allotment(AGENCY, 115, "9876543210", 0),
                          Allotment("379000002A", 116, "0123456789", 10**13)]
    assert [a.line for a in allotments] == [2, 4, 5]
    assert allotments[0].key == KEY


def refused_lines(text: str) -> list[tuple[int | None, str | None]]:
    refusal = refusal_of(parse_allotments, text)
    assert {p.code for p in refusal.problems} == {"budget-file-invalid"}
    return [(p.line, p.path) for p in refusal.problems]


def test_every_bad_line_is_listed_with_its_line_and_column() -> None:
    text = ("agency,fiscal_year,budget_subject,amount\n"
            "379000001A,115,0123456789,100\n"
            "379000001A,115,0000000001,100.50\n"  # 3 decimals
            "379000001A,115,0000000002,-5\n"  # 4 negative
            f"379000001A,115,0000000003,{MAX_AMOUNT + 1}\n"  # 5 too large
            "379000001A,2026,0000000004,1\n"  # 6 Gregorian year
            "37900001A,115,000000005,1\n"  # 7 agency and subject
            '379000001A,115,0000000006,"1,000"\n'  # 8 thousands separator
            "379000001A,115,0123456789,7\n"  # 9 duplicate of line 2
            "379000001A,115,0000000007\n"  # 10 a field missing
            "379000001A, 115,0000000008,1\n"  # 11 a space
            "379000001A,115,0000000009,1e6\n")  # 12 not digits
    assert refused_lines(text) == [(3, "amount"), (4, "amount"), (5, "amount"), (6, "fiscal_year"), (7, "agency"),
                                   (7, "budget_subject"), (8, "amount"), (9, "agency"), (10, None),
                                   (11, "fiscal_year"), (12, "amount")]


@pytest.mark.parametrize(("amount", "words"), [("100.50", "decimals"), ("-5", "negative"),
                                               ('"1,000"', "separators"), ("0100", "leading zeros"),
                                               (str(MAX_AMOUNT + 1), "10,000,000,000,000"), ("1e6", "digits")])
def test_bad_amounts_say_what_is_wrong(amount: str, words: str) -> None:
    text = f"agency,fiscal_year,budget_subject,amount\n{AGENCY},115,0123456789,{amount}\n"
    refusal = refusal_of(parse_allotments, text)
    assert words in refusal.message and refusal.problems[0].path == "amount"


def test_a_gregorian_year_gets_a_hint() -> None:
    refusal = refusal_of(parse_allotments, f"agency,fiscal_year,budget_subject,amount\n{AGENCY},2026,0123456789,1\n")
    assert "minus 1911" in refusal.message


def test_a_duplicate_key_names_its_first_line() -> None:
    refusal = refusal_of(parse_allotments, "agency,fiscal_year,budget_subject,amount\n"
                         f"{AGENCY},115,0123456789,1\n{AGENCY},115,0123456789,2\n")
    assert refusal.problems[0].line == 3 and "line 2" in refusal.message


@pytest.mark.parametrize("header", ["agency,year,budget_subject,amount", "agency,fiscal_year,budget_subject",
                                    "Agency,Fiscal_Year,Budget_Subject,Amount", f"{AGENCY},115,0123456789,1"])
def test_a_header_mismatch_is_refused_on_its_line(header: str) -> None:
    assert refused_lines(f"\n{header}\n{AGENCY},115,0123456789,1\n") == [(2, None)]


@pytest.mark.parametrize("text", ["", "\ufeff", "\n\n", "agency,fiscal_year,budget_subject,amount\n"])
def test_an_empty_file_is_refused(text: str) -> None:
    refusal = refusal_of(parse_allotments, text)
    assert refusal.code == "budget-file-invalid" and ("empty" in refusal.message or "no allotments" in refusal.message)


def test_broken_quoting_is_refused() -> None:
    [(line, _)] = refused_lines(f'agency,fiscal_year,budget_subject,amount\n{AGENCY},115,"0123456789"x,1\n')
    assert line == 2


@pytest.mark.parametrize("amount", [1.0, -1, MAX_AMOUNT + 1, True, "100"])
def test_an_allotment_refuses_anything_but_whole_dollars_in_range(amount) -> None:
    with pytest.raises(ValueError):
        Allotment(AGENCY, 115, "0123456789", amount)


@pytest.mark.parametrize(("agency", "year", "subject"), [("379000001a", 115, "0123456789"),
                                                         (AGENCY, 2026, "0123456789"), (AGENCY, 89, "0123456789"),
                                                         (AGENCY, 115, "012345678")])
def test_an_allotment_checks_its_key(agency: str, year: int, subject: str) -> None:
    with pytest.raises(ValueError):
        Allotment(agency, year, subject, 1)


agencies = st.from_regex(r"\A[0-9]{9}[A-Z0-9]\Z")
subjects = st.from_regex(r"\A[0-9]{10}\Z")
allotment_lists = st.lists(st.builds(Allotment, agencies, st.integers(90, 999), subjects, st.integers(0, MAX_AMOUNT)),
                           min_size=1, max_size=20, unique_by=lambda a: a.key)


@settings(max_examples=200, deadline=None)
@given(allotment_lists, st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_a_written_file_reads_back(allotments: list[Allotment], newline: str, bom: bool) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(CSV_HEADER)
    writer.writerows((a.agency, a.fiscal_year, a.budget_subject, a.amount) for a in allotments)
    assert parse_allotments(("\ufeff" if bom else "") + out.getvalue()) == allotments


line_parts = st.sampled_from(["379000001A", "115", "0123456789", "100", "-1", "1.5", "2026", ",", "\"", "\n",
                              "\r", " ", "\x00", "\ufeff", "agency,fiscal_year,budget_subject,amount\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(line_parts | st.text(max_size=8), max_size=40).map("".join))
def test_the_parser_only_ever_refuses(text: str) -> None:
    for candidate in (text, "agency,fiscal_year,budget_subject,amount\n" + text):
        try:
            allotments = parse_allotments(candidate)
        except Refusal as refusal:
            assert refusal.problems and all(p.code == "budget-file-invalid" for p in refusal.problems)
        else:
            assert allotments and all(isinstance(a, Allotment) for a in allotments)


# --- the ledger --------------------------------------------------------------------------------------------------


@pytest.fixture
def ledger() -> BudgetLedger:
    return BudgetLedger.from_allotments([Allotment(AGENCY, 115, "0123456789", 1000),
                                         Allotment(AGENCY, 115, "9876543210", 50)])


def test_a_reservation_takes_from_what_remains(ledger: BudgetLedger) -> None:
    after = ledger.reserve(KEY, "v1", 600)
    assert after.balance(KEY) == BudgetBalance(1000, reserved=600)
    assert after.balance(KEY).remaining == 400
    assert after.reservation("v1") == Reservation("v1", KEY, 600, ReservationState.RESERVED)
    assert ledger.balance(KEY) == BudgetBalance(1000)  # the old ledger is unchanged
    assert after.balance(OTHER) == BudgetBalance(50)


def test_more_than_remains_is_refused_saying_what_remains(ledger: BudgetLedger) -> None:
    after = ledger.reserve(KEY, "v1", 600)
    refusal = refusal_of(after.reserve, KEY, "v2", 401)
    assert refusal.code == "budget-exceeded" and "NT$ 400 " in refusal.message and refusal.http_status == 409
    assert after.reservation("v2") is None and after.balance(KEY).reserved == 600
    assert after.reserve(KEY, "v2", 400).balance(KEY).remaining == 0  # exactly what remains is fine


def test_a_key_without_allotment_is_refused(ledger: BudgetLedger) -> None:
    assert refusal_of(ledger.reserve, NOWHERE, "v1", 1).code == "budget-unknown"


def test_reserving_twice_counts_once(ledger: BudgetLedger) -> None:
    once = ledger.reserve(KEY, "v1", 1000)
    assert once.reserve(KEY, "v1", 1000) is once  # a replay even when nothing remains
    assert once.consume("v1").reserve(KEY, "v1", 1000).balance(KEY) == BudgetBalance(1000, consumed=1000)


@pytest.mark.parametrize(("key", "amount"), [(KEY, 2), (OTHER, 1)])
def test_one_reference_cannot_hold_two_reservations(ledger: BudgetLedger, key: BudgetKey, amount: int) -> None:
    held = ledger.reserve(KEY, "v1", 1)
    assert refusal_of(held.reserve, key, "v1", amount).code == "budget-reservation-conflict"


def test_payment_moves_reserved_to_consumed_once(ledger: BudgetLedger) -> None:
    paid = ledger.reserve(KEY, "v1", 300).consume("v1")
    assert paid.balance(KEY) == BudgetBalance(1000, reserved=0, consumed=300)
    assert paid.consume("v1") is paid
    assert paid.reservation("v1").state is ReservationState.CONSUMED


def test_release_frees_a_reservation_once(ledger: BudgetLedger) -> None:
    released = ledger.reserve(KEY, "v1", 300).release("v1")
    assert released.balance(KEY) == BudgetBalance(1000)
    assert released.release("v1") is released


def test_a_bank_return_after_payment_frees_the_consumed_money(ledger: BudgetLedger) -> None:
    returned = ledger.reserve(KEY, "v1", 300).consume("v1").release("v1")
    assert returned.balance(KEY) == BudgetBalance(1000)
    assert returned.reservation("v1").state is ReservationState.RELEASED


def test_a_released_reference_is_final(ledger: BudgetLedger) -> None:
    released = ledger.reserve(KEY, "v1", 300).release("v1")
    assert refusal_of(released.consume, "v1").code == "budget-reservation-conflict"
    assert refusal_of(released.reserve, KEY, "v1", 300).code == "budget-reservation-conflict"
    assert released.reserve(KEY, "v1#2", 300).balance(KEY).reserved == 300  # a new attempt, a new reference


def test_unknown_references_are_refused(ledger: BudgetLedger) -> None:
    assert refusal_of(ledger.consume, "nope").code == "budget-reservation-unknown"
    assert refusal_of(ledger.release, "nope").code == "budget-reservation-unknown"


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, MAX_AMOUNT + 1])
def test_a_reservation_is_a_positive_whole_amount(ledger: BudgetLedger, amount) -> None:
    with pytest.raises(ValueError):
        ledger.reserve(KEY, "v1", amount)


def test_reload_raises_and_lowers_allotments_but_not_below_commitments(ledger: BudgetLedger) -> None:
    used = ledger.reserve(KEY, "v1", 300).consume("v1").reserve(KEY, "v2", 200)
    assert used.reload([Allotment(AGENCY, 115, "0123456789", 2000)]).balance(KEY) == BudgetBalance(2000, 200, 300)
    assert used.reload([Allotment(AGENCY, 115, "0123456789", 500)]).balance(KEY).remaining == 0
    text = ("agency,fiscal_year,budget_subject,amount\n"
            f"{AGENCY},115,9876543210,70\n"
            f"{AGENCY},115,0123456789,499\n")
    refusal = refusal_of(used.reload, parse_allotments(text))
    assert refusal.code == "budget-allotment-too-low" and "500" in refusal.message
    assert (refusal.problems[0].line, refusal.problems[0].path) == (3, "amount")
    assert used.balance(OTHER) == BudgetBalance(50)  # all or nothing: the good line 2 was not applied either


def test_reload_adds_new_keys_and_keeps_unlisted_ones(ledger: BudgetLedger) -> None:
    reloaded = ledger.reload([Allotment("379000002A", 115, "0123456789", 7)])
    assert reloaded.balance(NOWHERE) == BudgetBalance(7)
    assert reloaded.balance(KEY) == BudgetBalance(1000) and reloaded.balance(OTHER) == BudgetBalance(50)


def test_reload_refuses_a_key_listed_twice(ledger: BudgetLedger) -> None:
    twice = [Allotment(AGENCY, 115, "0123456789", 1, line=2), Allotment(AGENCY, 115, "0123456789", 2, line=5)]
    refusal = refusal_of(ledger.reload, twice)
    assert refusal.code == "budget-file-invalid" and refusal.problems[0].line == 5 and "line 2" in refusal.message


@pytest.mark.parametrize(("allotted", "reserved", "consumed"), [(10, 6, 5), (-1, 0, 0), (10, -1, 0), (1.0, 0, 0),
                                                                (MAX_AMOUNT + 1, 0, 0)])
def test_a_balance_cannot_break_the_invariants(allotted, reserved, consumed) -> None:
    with pytest.raises(ValueError):
        BudgetBalance(allotted, reserved, consumed)


def test_a_ledger_from_stored_state_must_add_up() -> None:
    reservation = Reservation("v1", KEY, 5, ReservationState.RESERVED)
    assert BudgetLedger({KEY: BudgetBalance(10, 5)}, {"v1": reservation}).balance(KEY).remaining == 5
    with pytest.raises(ValueError):
        BudgetLedger({KEY: BudgetBalance(10, 4)}, {"v1": reservation})  # reserved does not match
    with pytest.raises(ValueError):
        BudgetLedger({OTHER: BudgetBalance(10)}, {"v1": reservation})  # a reservation on a key without allotment
    with pytest.raises(ValueError):
        BudgetLedger({KEY: BudgetBalance(10, 5)}, {"v2": reservation})  # filed under another reference


def test_a_voucher_spends_from_its_agency_year_and_subject() -> None:
    voucher = Voucher(agency_code=AGENCY, fiscal_year=115, voucher_number="000123", revision=1,
                      document_type=DocumentType.PAYMENT,
                      payment_method=PaymentMethod(PaymentMethodKind.CREDIT_TRANSFER),
                      urgency=Urgency.ORDINARY, budget_subject="0123456789", object_class=ObjectClass.OPERATIONS,
                      purpose="文具", prepared_on=datetime.date(2026, 3, 2), lines=(), line_count=0, total_amount=0)
    assert BudgetKey.of(voucher) == KEY
    assert str(KEY) == "379000001A/115/0123456789"


# --- the ledger against a model, under random operation sequences ---------------------------------------------

KEYS = [KEY, OTHER, BudgetKey("379000002A", 116, "0000000001")]
UNALLOTTED = BudgetKey("379000009Z", 115, "0000000002")
REFS = [f"v{i}" for i in range(8)]


class LedgerMachine(RuleBasedStateMachine):
    """Drives BudgetLedger with random operations and checks it against a model kept here: the allotments, and
    each reference's (key, amount, state). Sums are recomputed from the model every step, so a ledger that
    updated its running totals wrongly would differ."""

    @initialize(amounts=st.lists(st.integers(0, 1000), min_size=len(KEYS), max_size=len(KEYS)))
    def start(self, amounts: list[int]) -> None:
        self.allotted = dict(zip(KEYS, amounts))
        self.refs: dict[str, tuple[BudgetKey, int, str]] = {}
        self.ledger = BudgetLedger.from_allotments(Allotment(*key, amount) for key, amount in self.allotted.items())
        self.total = sum(amounts)

    def _sum(self, key: BudgetKey, state: str) -> int:
        return sum(amount for k, amount, s in self.refs.values() if k == key and s == state)

    def _remaining(self, key: BudgetKey) -> int:
        return self.allotted[key] - self._sum(key, "reserved") - self._sum(key, "consumed")

    def _expect(self, code: str | None, call, *args) -> None:
        before = self.ledger
        if code is None:
            self.ledger = call(*args)
        else:
            with pytest.raises(Refusal) as info:
                call(*args)
            assert info.value.code == code
            assert self.ledger == before  # a refusal changes nothing

    @rule(key=st.sampled_from(KEYS + [UNALLOTTED]), ref=st.sampled_from(REFS), amount=st.integers(1, 700))
    def reserve(self, key: BudgetKey, ref: str, amount: int) -> None:
        existing = self.refs.get(ref)
        if existing is not None:
            same = existing[:2] == (key, amount) and existing[2] != "released"
            self._expect(None if same else "budget-reservation-conflict", self.ledger.reserve, key, ref, amount)
        elif key not in self.allotted:
            self._expect("budget-unknown", self.ledger.reserve, key, ref, amount)
        elif amount > self._remaining(key):
            self._expect("budget-exceeded", self.ledger.reserve, key, ref, amount)
            assert f"NT$ {self._remaining(key):,} " in self._last_message(key, ref, amount)
        else:
            self._expect(None, self.ledger.reserve, key, ref, amount)
            self.refs[ref] = (key, amount, "reserved")

    def _last_message(self, key: BudgetKey, ref: str, amount: int) -> str:
        try:
            self.ledger.reserve(key, ref, amount)
        except Refusal as refusal:
            return refusal.message
        raise AssertionError("expected a refusal")

    @rule(ref=st.sampled_from(REFS))
    def consume(self, ref: str) -> None:
        existing = self.refs.get(ref)
        if existing is None:
            self._expect("budget-reservation-unknown", self.ledger.consume, ref)
        elif existing[2] == "released":
            self._expect("budget-reservation-conflict", self.ledger.consume, ref)
        else:
            self._expect(None, self.ledger.consume, ref)
            self.refs[ref] = (existing[0], existing[1], "consumed")

    @rule(ref=st.sampled_from(REFS))
    def release(self, ref: str) -> None:
        existing = self.refs.get(ref)
        if existing is None:
            self._expect("budget-reservation-unknown", self.ledger.release, ref)
        else:
            self._expect(None, self.ledger.release, ref)
            self.refs[ref] = (existing[0], existing[1], "released")

    @rule(key=st.sampled_from(KEYS), amount=st.integers(0, 1500))
    def reload(self, key: BudgetKey, amount: int) -> None:
        committed = self._sum(key, "reserved") + self._sum(key, "consumed")
        if amount < committed:
            self._expect("budget-allotment-too-low", self.ledger.reload, [Allotment(*key, amount)])
        else:
            self._expect(None, self.ledger.reload, [Allotment(*key, amount)])
            self.total += amount - self.allotted[key]
            self.allotted[key] = amount

    @invariant()
    def balances_match_the_model(self) -> None:
        for key in KEYS:
            balance = self.ledger.balance(key)
            reserved, consumed = self._sum(key, "reserved"), self._sum(key, "consumed")
            assert (balance.allotted, balance.reserved, balance.consumed) == (self.allotted[key], reserved, consumed)
            assert balance.remaining == self._remaining(key) >= 0
            assert balance.allotted == balance.remaining + balance.reserved + balance.consumed
        assert self.ledger.balance(UNALLOTTED) is None

    @invariant()
    def money_is_conserved(self) -> None:
        # Only reloads change the total allotted; reservations only move money between the buckets.
        assert sum(b.allotted for b in self.ledger.balances.values()) == self.total
        assert sum(b.remaining + b.reserved + b.consumed for b in self.ledger.balances.values()) == self.total

    @invariant()
    def references_match_the_model(self) -> None:
        assert {ref: (r.key, r.amount, r.state.value) for ref, r in self.ledger.reservations.items()} == self.refs

    @invariant()
    def stored_state_reloads_as_the_same_ledger(self) -> None:
        # The full consistency check of the public constructor accepts every state the operations reach.
        assert BudgetLedger(self.ledger.balances, self.ledger.reservations) == self.ledger


LedgerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_ledger_against_its_model = LedgerMachine.TestCase
