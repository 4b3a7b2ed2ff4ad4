"""Payee identifier checks: known examples, the 2023 business-ID rule change, and generated properties."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.vouchers.identifiers import (
    BUSINESS_ID_MOD5_FROM,
    business_id_check_digit,
    identify,
    is_valid_business_id,
    is_valid_national_id,
    is_valid_resident_id,
    make_business_id,
    make_national_id,
    make_resident_id,
    national_id_check_digit,
)

BEFORE = datetime.date(2023, 3, 31)
AFTER = datetime.date(2023, 4, 1)

letters = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
seven_digits = st.text(alphabet="0123456789", min_size=7, max_size=7)
eight_digits = st.text(alphabet="0123456789", min_size=8, max_size=8)
dates = st.dates(min_value=datetime.date(2000, 1, 1), max_value=datetime.date(2100, 12, 31))

# Weights of positions 1..9 of a national/resident ID (position 0 is the letter).
PERSON_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 1, 1)


# --- national ID -------------------------------------------------------------------------------------------


def test_known_national_id_is_valid() -> None:
    # A=10: 1*1 + 0*9 + 1*8 + 2*7 + 3*6 + 4*5 + 5*4 + 6*3 + 7*2 + 8*1 + 9 = 130
    assert is_valid_national_id("A123456789")
    assert national_id_check_digit("A12345678") == "9"


@pytest.mark.parametrize(
    "value",
    [
        "A123456788",  # wrong check digit
        "a123456789",  # lower case
        "A12345678",  # too short
        "A1234567890",  # too long
        "A323456789",  # gender digit must be 1 or 2
        "A823456789",  # a resident ID pattern is not a national ID
        "1123456789",  # no letter
        "A123456789\n",
        " A123456789",
        "Ａ１２３４５６７８９",  # full-width characters
        "A1２3456789",  # one full-width digit: \d would have matched it, and int("２") == 2
        "",
    ],
)
def test_bad_national_ids_are_refused(value: str) -> None:
    assert not is_valid_national_id(value)


@pytest.mark.parametrize(
    "value",
    [
        # Computed by hand for the letters whose values break the alphabetical run; "1" then seven zeros.
        "I100000003",  # I=34: 3 + 4*9 + 1*8 = 47
        "O100000004",  # O=35: 3 + 5*9 + 8 = 56
        "W100000001",  # W=32: 3 + 2*9 + 8 = 29
        "X100000009",  # X=30: 3 + 0 + 8 = 11
        "Y100000000",  # Y=31: 3 + 9 + 8 = 20
        "Z100000002",  # Z=33: 3 + 27 + 8 = 38
        "J100000009",  # J=18: 1 + 8*9 + 8 = 81
    ],
)
def test_irregular_letter_values(value: str) -> None:
    assert is_valid_national_id(value)


def test_checksum_misses_some_single_digit_changes() -> None:
    # Weight 6 on the 4th character: changing 3 -> 8 adds 30, so the sum stays divisible by 10.
    assert is_valid_national_id("A128456789")


@given(letters, st.sampled_from("12"), seven_digits)
def test_made_national_ids_validate(letter: str, gender: str, digits: str) -> None:
    value = make_national_id(letter, gender, digits)
    assert value[:9] == letter + gender + digits
    assert is_valid_national_id(value)
    assert not is_valid_resident_id(value)


@given(letters, st.sampled_from("12"), seven_digits, st.integers(1, 9), st.integers(0, 9))
def test_single_digit_change_is_caught_exactly_when_weight_times_change_is_not_a_multiple_of_10(
    letter: str, gender: str, digits: str, position: int, new_digit: int
) -> None:
    value = make_national_id(letter, gender, digits)
    old_digit = int(value[position])
    if new_digit == old_digit:
        new_digit = (new_digit + 1) % 10
    mutated = value[:position] + str(new_digit) + value[position + 1 :]
    still_well_formed = position != 1 or str(new_digit) in "12"
    undetected = PERSON_WEIGHTS[position - 1] * (new_digit - old_digit) % 10 == 0
    assert is_valid_national_id(mutated) == (still_well_formed and undetected)


@given(letters, st.sampled_from("12"), seven_digits, st.integers(1, 9))
def test_changing_the_check_digit_always_invalidates(letter: str, gender: str, digits: str, delta: int) -> None:
    value = make_national_id(letter, gender, digits)
    mutated = value[:9] + str((int(value[9]) + delta) % 10)
    assert not is_valid_national_id(mutated)


# --- resident ID -------------------------------------------------------------------------------------------


def test_known_resident_id_is_valid() -> None:
    # A=10: 1 + 0 + 8*8 + 1*1 (8th digit) = 66, check digit 4.
    assert is_valid_resident_id("A800000014")
    assert not is_valid_national_id("A800000014")


@pytest.mark.parametrize(
    "value",
    [
        "A800000015",  # wrong check digit
        "a800000014",  # lower case
        "A80000001",  # too short
        "A123456789",  # a national ID is not a resident ID
        "A80000001４",  # full-width check digit
        "AB12345678",  # old-style two-letter resident ID: not accepted
        "AC01234567",
    ],
)
def test_bad_resident_ids_are_refused(value: str) -> None:
    assert not is_valid_resident_id(value)


@given(letters, st.sampled_from("89"), seven_digits)
def test_made_resident_ids_validate(letter: str, gender: str, digits: str) -> None:
    value = make_resident_id(letter, gender, digits)
    assert is_valid_resident_id(value)
    assert not is_valid_national_id(value)


@pytest.mark.parametrize(
    ("maker", "args"),
    [
        (make_national_id, ("a", "1", "2345678")),
        (make_national_id, ("A", "8", "2345678")),
        (make_national_id, ("A", "1", "234567")),
        (make_national_id, ("AB", "1", "2345678")),
        (make_resident_id, ("A", "1", "2345678")),
        (make_resident_id, ("A", "8", "234567８")),
    ],
)
def test_makers_refuse_bad_parts(maker: Callable[[str, str, str], str], args: tuple[str, str, str]) -> None:
    with pytest.raises(ValueError):
        maker(*args)


# --- business ID (統一編號) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "22099131",  # TSMC: 2+4+0+9+9+2+3+1 = 30
        "04595257",  # 0+8+5+9+5+4+2+7 = 40
        "10458575",  # 7th digit 7, counted as 0: 20
    ],
)
def test_known_business_ids_are_valid_under_both_rules(value: str) -> None:
    assert is_valid_business_id(value, on=BEFORE)
    assert is_valid_business_id(value, on=AFTER)


@pytest.mark.parametrize(
    "value",
    ["12345678", "22099132", "2209913", "220991311", "2209913A", "２２０９９１３１", " 22099131", ""],
)
def test_bad_business_ids_are_refused(value: str) -> None:
    assert not is_valid_business_id(value, on=BEFORE)
    assert not is_valid_business_id(value, on=AFTER)


def test_mod5_rule_starts_on_2023_04_01() -> None:
    # 0+8+5+9+5+4+2+2 = 35: divisible by 5, not by 10.
    assert BUSINESS_ID_MOD5_FROM == AFTER
    assert not is_valid_business_id("04595252", on=BEFORE)
    assert is_valid_business_id("04595252", on=AFTER)


def test_seventh_digit_seven_counts_as_zero_or_one() -> None:
    # 12345675: 1+4+3+8+5+3+(28 -> 10 -> 0 or 1)+5 = 29 or 30. Valid only because 1 is allowed.
    assert is_valid_business_id("12345675", on=BEFORE)
    # ...and 30 or 31 for 12345676: valid because 0 is allowed. Two check digits work for one prefix.
    assert is_valid_business_id("12345676", on=BEFORE)
    assert not is_valid_business_id("12345677", on=BEFORE)
    # Without the 7 the +1 is not available: 1+4+3+8+5+3+(6*4=24 -> 6)+1 = 31.
    assert not is_valid_business_id("12345661", on=BEFORE)
    # Under the mod-5 rule the +1 also applies: 10458579 sums to 24 or 25.
    assert not is_valid_business_id("10458579", on=BEFORE)
    assert is_valid_business_id("10458579", on=AFTER)
    # The +1 also hides an error elsewhere that lowers the sum by 1: 10458575 -> 00458575 sums to 19 or 20.
    assert is_valid_business_id("00458575", on=BEFORE)


def _reference_business_id_ok(value: str, on: datetime.date) -> bool:
    """The rule as commonly published: 28 gives 2+8 = 10; also accept sum+1 when the 7th digit is 7."""
    total = 0
    for digit, weight in zip(value, (1, 2, 1, 2, 1, 2, 4, 1), strict=True):
        product = int(digit) * weight
        total += product // 10 + product % 10
    modulus = 5 if on >= datetime.date(2023, 4, 1) else 10
    return total % modulus == 0 or (value[6] == "7" and (total + 1) % modulus == 0)


@given(eight_digits, dates)
def test_business_id_matches_reference_rule(value: str, on: datetime.date) -> None:
    assert is_valid_business_id(value, on=on) == _reference_business_id_ok(value, on)


@given(eight_digits)
def test_old_rule_valid_implies_new_rule_valid(value: str) -> None:
    if is_valid_business_id(value, on=BEFORE):
        assert is_valid_business_id(value, on=AFTER)


@given(seven_digits, dates)
def test_made_business_ids_validate_on_any_date(digits: str, on: datetime.date) -> None:
    value = make_business_id(digits)
    assert value == digits + business_id_check_digit(digits)
    assert is_valid_business_id(value, on=on)


@given(seven_digits.filter(lambda s: s[6] != "7"), st.integers(0, 7), st.integers(1, 9))
def test_old_rule_catches_single_digit_changes_except_seventh_zero_seven_swap(
    digits: str, position: int, delta: int
) -> None:
    # Starting from a 7th digit other than 7; with a 7 there, see test_seventh_digit_seven_counts_as_zero_or_one.
    value = make_business_id(digits)
    old = value[position]
    new = str((int(old) + delta) % 10)
    mutated = value[:position] + new + value[position + 1 :]
    zero_seven_swap = position == 6 and {old, new} == {"0", "7"}
    assert is_valid_business_id(mutated, on=BEFORE) == zero_seven_swap


def test_business_check_digit_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        business_id_check_digit("123456")
    with pytest.raises(ValueError):
        make_business_id("12345a7")


# --- dispatch ------------------------------------------------------------------------------------------------


def test_identify_dispatches_on_type() -> None:
    assert identify("A123456789", "national-id", on=AFTER)
    assert not identify("A123456789", "resident-id", on=AFTER)
    assert identify("A800000014", "resident-id", on=AFTER)
    assert not identify("A800000014", "national-id", on=AFTER)
    assert identify("04595252", "business-id", on=AFTER)
    assert not identify("04595252", "business-id", on=BEFORE)
    assert not identify("A123456789", "business-id", on=AFTER)


def test_identify_refuses_unknown_type() -> None:
    with pytest.raises(ValueError, match="passport"):
        identify("A123456789", "passport", on=AFTER)
