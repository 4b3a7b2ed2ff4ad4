"""Check the payee identifiers printed on vouchers before any money moves.

A voucher names each payee by a Taiwan identifier: a national ID (身分證字號), a new-style resident
certificate number (居留證號, 2021 format) or a business ID (統一編號). A mistyped identifier would send
money to, or report tax against, the wrong party, and once the bank has executed the transfer it is hard to
undo. So the gateway checks the format and the check digit here, as a pure function of the text (and, for
business IDs, of the voucher's date), before anything is forwarded.

These checks catch typing errors; they do not prove that the identifier belongs to anyone. Note that the
national-ID checksum does not catch every single-digit change: its weights 8, 6, 5, 4 and 2 share a
factor with 10, so for example A123456789 and A128456789 are both valid.

The ``make_*`` helpers build valid identifiers from their leading parts, for tests and test-data generators.
"""

from __future__ import annotations

import datetime
import re

__all__ = [
    "BUSINESS_ID_MOD5_FROM",
    "ID_TYPES",
    "business_id_check_digit",
    "identify",
    "is_valid_business_id",
    "is_valid_national_id",
    "is_valid_resident_id",
    "make_business_id",
    "make_national_id",
    "make_resident_id",
    "national_id_check_digit",
]

# ---------------------------------------------------------------------------------------------------------
# National ID and new-style resident ID: one letter, a category digit, seven digits, one check digit.
# ---------------------------------------------------------------------------------------------------------

_LETTER_VALUES: dict[str, int] = {
    "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17, "I": 34,
    "J": 18, "K": 19, "L": 20, "M": 21, "N": 22, "O": 35, "P": 23, "Q": 24, "R": 25,
    "S": 26, "T": 27, "U": 28, "V": 29, "W": 32, "X": 30, "Y": 31, "Z": 33,
}  # fmt: skip
"""The two-digit value each leading letter stands for (the order is historical, hence I, O, W-Z)."""

_LETTER_PARTIAL = {letter: v // 10 + (v % 10) * 9 for letter, v in _LETTER_VALUES.items()}
"""The letter's share of the checksum: its two digits weighted 1 and 9."""

# [0-9] rather than \d: \d would also match full-width and other Unicode digits such as "１".
_NATIONAL_ID = re.compile(r"[A-Z][12][0-9]{8}")
_RESIDENT_ID = re.compile(r"[A-Z][89][0-9]{8}")


def _person_id_partial(first9: str) -> int:
    """Weighted sum of the letter and the next eight digits (everything but the check digit), mod 10."""
    tens, units = divmod(_LETTER_VALUES[first9[0]], 10)
    d = first9.encode("ascii")  # callers have matched [A-Z][0-9]{8}: one byte per character
    # Weights 8..1 on the eight digits, written out: this runs for every payee line of every voucher.
    total = (tens + units * 9 + 8 * d[1] + 7 * d[2] + 6 * d[3] + 5 * d[4] + 4 * d[5] + 3 * d[6] + 2 * d[7] + d[8]
             - 36 * 48)  # each byte is its digit + 48; the weights add up to 36
    return total % 10


def national_id_check_digit(first9: str) -> str:
    """The check digit for a letter followed by eight digits (e.g. ``"A12345678"`` -> ``"9"``).

    The same checksum serves national IDs and new-style resident IDs.
    """
    if not re.fullmatch(r"[A-Z][0-9]{8}", first9):
        raise ValueError(f"expected an upper-case letter and eight digits, got {first9!r}")
    return str(-_person_id_partial(first9) % 10)


def _person_id_ok(value: object, pattern: re.Pattern[str]) -> bool:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        return False
    # The pattern admits only ASCII, so each character is one byte: the checksum of _person_id_partial plus
    # the check digit, written out because it runs for every payee line of every voucher.
    d = value.encode("ascii")
    total = (_LETTER_PARTIAL[value[0]] + 8 * d[1] + 7 * d[2] + 6 * d[3] + 5 * d[4] + 4 * d[5] + 3 * d[6]
             + 2 * d[7] + d[8] + d[9] - 37 * 48)  # each byte is its digit + 48; the weights add up to 37
    return total % 10 == 0


def is_valid_national_id(value: str) -> bool:
    """True for a well-formed national ID: ``[A-Z][12]`` and eight digits, with a correct check digit.

    Upper case only, no surrounding spaces: normalising is the caller's decision, not ours.
    """
    return _person_id_ok(value, _NATIONAL_ID)


def is_valid_resident_id(value: str) -> bool:
    """True for a well-formed new-style (2021) resident ID: ``[A-Z][89]`` and eight digits, same checksum.

    Old-style resident IDs (two letters then eight digits, e.g. ``AB12345678``) are NOT accepted: they
    were replaced in 2021, and a payee still holding one must be identified by the new number.
    """
    return _person_id_ok(value, _RESIDENT_ID)


def _make_person_id(letter: str, gender_digit: str, seven_digits: str, allowed: str) -> str:
    if letter not in _LETTER_VALUES:
        raise ValueError(f"letter must be one upper-case letter A-Z, got {letter!r}")
    if len(gender_digit) != 1 or gender_digit not in allowed:
        raise ValueError(f"gender digit must be one of {allowed!r}, got {gender_digit!r}")
    if not re.fullmatch(r"[0-9]{7}", seven_digits):
        raise ValueError(f"expected seven ASCII digits, got {seven_digits!r}")
    first9 = letter + gender_digit + seven_digits
    return first9 + national_id_check_digit(first9)


def make_national_id(letter: str, gender_digit: str, seven_digits: str) -> str:
    """A valid national ID from its letter, gender digit (``"1"`` or ``"2"``) and seven digits."""
    return _make_person_id(letter, gender_digit, seven_digits, "12")


def make_resident_id(letter: str, gender_digit: str, seven_digits: str) -> str:
    """A valid new-style resident ID from its letter, gender digit (``"8"`` or ``"9"``) and seven digits."""
    return _make_person_id(letter, gender_digit, seven_digits, "89")


# ---------------------------------------------------------------------------------------------------------
# Business ID (統一編號): eight digits.
# ---------------------------------------------------------------------------------------------------------

BUSINESS_ID_MOD5_FROM = datetime.date(2023, 4, 1)
"""From this date the Ministry of Finance accepts a business ID whose checksum is divisible by 5 (before: by
10), because the mod-10 numbers were running out. Every mod-10-valid number is also mod-5-valid."""

_BUSINESS_ID = re.compile(r"[0-9]{8}")
_BUSINESS_WEIGHTS = (1, 2, 1, 2, 1, 2, 4, 1)


def _business_sum(eight_or_seven: str) -> int:
    """Sum of the digit sums of digit*weight, counting the 7th position as 0 when that digit is 7.

    Each product is at most 9*4 = 36, so one digit-sum pass gives a single digit except for 7*4 = 28:
    2+8 = 10, which the official rule reads as either 1 (1+0) or 0 (its last digit). Counting it as 0 here
    lets callers accept ``total`` or ``total + 1``.
    """
    total = 0
    for position, (c, w) in enumerate(zip(eight_or_seven, _BUSINESS_WEIGHTS, strict=False)):
        if position == 6 and c == "7":
            continue
        product = int(c) * w
        total += product // 10 + product % 10
    return total


def is_valid_business_id(value: str, *, on: datetime.date) -> bool:
    """True for eight ASCII digits whose 統一編號 checksum holds under the rule in force ``on`` that date.

    Weights 1,2,1,2,1,2,4,1; add the digits of each product; the sum must be divisible by 5 on or after
    2023-04-01, by 10 before. When the 7th digit is 7 its product 28 gives 10, counted as 0 or 1: either
    sum may satisfy the rule.
    """
    if not isinstance(value, str) or not _BUSINESS_ID.fullmatch(value):
        return False
    modulus = 5 if on >= BUSINESS_ID_MOD5_FROM else 10
    total = _business_sum(value)
    if total % modulus == 0:
        return True
    return value[6] == "7" and (total + 1) % modulus == 0


def business_id_check_digit(seven_digits: str) -> str:
    """The last digit that makes ``seven_digits`` a business ID valid under both the old and the new rule.

    The last digit has weight 1 and contributes itself, so some digit 0-9 always brings the sum to a
    multiple of 10; that number is then also valid under the mod-5 rule. A mod-5-only fallback is never
    needed.
    """
    if not re.fullmatch(r"[0-9]{7}", seven_digits):
        raise ValueError(f"expected seven ASCII digits, got {seven_digits!r}")
    return str(-_business_sum(seven_digits) % 10)


def make_business_id(seven_digits: str) -> str:
    """A business ID valid on any date, from its first seven digits (see :func:`business_id_check_digit`)."""
    return seven_digits + business_id_check_digit(seven_digits)


# ---------------------------------------------------------------------------------------------------------
# Dispatch on the identifier type named in the voucher.
# ---------------------------------------------------------------------------------------------------------

ID_TYPES = frozenset({"national-id", "resident-id", "business-id"})


def identify(value: str, id_type: str, *, on: datetime.date) -> bool:
    """Check ``value`` as an identifier of ``id_type`` (one of :data:`ID_TYPES`) on the voucher date ``on``.

    An unknown ``id_type`` raises :class:`ValueError`: it is a programming or schema error, not a bad payee.
    """
    if id_type == "national-id":
        return is_valid_national_id(value)
    if id_type == "resident-id":
        return is_valid_resident_id(value)
    if id_type == "business-id":
        return is_valid_business_id(value, on=on)
    raise ValueError(f"unknown identifier type {id_type!r}; expected one of {sorted(ID_TYPES)}")
