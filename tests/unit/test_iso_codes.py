"""The ISO 20022 code sets shipped as package data: complete, read once, and what the readers rely on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.bank import iso_codes
from gateway.bank.iso_codes import (
    CODE_SETS,
    GROUP_STATUSES,
    RETURN_REASONS,
    STATUS_REASONS,
    TRANSACTION_STATUSES,
    code_set,
    describe_reason,
    reason_definition,
    reason_name,
    return_reason_definition,
    return_reason_name,
    status_definition,
    status_name,
)
from gateway.bank.reports import GROUP_OUTCOMES, TRANSACTION_OUTCOMES

DATA = Path(iso_codes.__file__).parents[1] / "data"


def test_every_code_set_is_complete() -> None:
    """The counts of the 2025-03 release we copied (data/SOURCES.md): a truncated or hand-edited file shows here."""
    assert {name: len(code_set(name)) for name in CODE_SETS} == {
        STATUS_REASONS: 301, RETURN_REASONS: 104, TRANSACTION_STATUSES: 25, GROUP_STATUSES: 13}


@pytest.mark.parametrize("set_name", CODE_SETS)
def test_entries_are_well_formed(set_name: str) -> None:
    for code, (name, definition) in code_set(set_name).items():
        assert re.fullmatch(r"[A-Z0-9]{4}", code), code
        assert name and definition and definition.startswith(name), code
        assert not name.endswith(".") and "\n" not in name and "  " not in definition, code


def test_common_rejection_reasons_read_as_text() -> None:
    assert reason_name("AC01") == "Account number is invalid or missing"
    assert reason_name("AM04") == "Amount of funds available to cover specified message amount is insufficient"
    assert reason_name("NARR") == "Reason is provided as narrative information in the additional reason information"
    assert reason_definition("AB07") == ("Agent of message is not online. Generic usage if it cannot be determined "
                                         "who exactly is not online.")
    assert reason_name(" AC04 ") == reason_name("AC04")


def test_return_reasons_are_their_own_code_set() -> None:
    """camt.054 RtrInf uses ExternalReturnReason1Code: the same code can read differently there."""
    assert return_reason_name("AC01") == "Format of the account number specified is not correct"
    assert return_reason_name("AC04") == "Account number specified has been closed on the bank of account's books"
    assert return_reason_definition("MD07") is not None
    assert reason_name("AC01") != return_reason_name("AC01")


def test_statuses_at_transaction_and_group_level() -> None:
    assert status_name("ACSC") == "Settlement completed"  # the transaction-level text wins
    assert status_name("PART").startswith("A number of transactions have been accepted")  # group level only
    assert status_name("RVNM").startswith("Verification of Payee check")
    assert status_definition("RJCT") == "Payment instruction has been rejected."


def test_unknown_codes_have_no_text_and_are_not_refused() -> None:
    """External code sets grow every quarter: a newer code than our copy is shown bare, never an error."""
    for lookup in (reason_name, reason_definition, return_reason_name, return_reason_definition, status_name,
                   status_definition):
        assert lookup("ZZ99") is None
        assert lookup(None) is None
        assert lookup(42) is None  # type: ignore[arg-type]


def test_every_status_the_readers_map_is_an_iso_code() -> None:
    """A typo in the readers' mapping tables (``ACSP`` vs ``ASCP``) would silently drop news."""
    assert set(TRANSACTION_OUTCOMES) <= set(code_set(TRANSACTION_STATUSES))
    assert set(GROUP_OUTCOMES) <= set(code_set(GROUP_STATUSES))


def test_describe_reason_for_people() -> None:
    assert describe_reason("AC01", "konto stängt") == "AC01 Account number is invalid or missing: konto stängt"
    assert describe_reason("AC01", returned=True) == "AC01 Format of the account number specified is not correct"
    assert describe_reason("ZZ99", "bank text") == "ZZ99: bank text"
    assert describe_reason(None, "bank text") == "bank text"
    assert describe_reason(None, None) is None


def test_loaded_once_and_read_only() -> None:
    assert code_set(STATUS_REASONS) is code_set(STATUS_REASONS)
    with pytest.raises(TypeError):
        code_set(STATUS_REASONS)["AC01"] = ("x", "y")  # type: ignore[index]


def test_the_data_file_names_its_source() -> None:
    sources = (DATA / "SOURCES.md").read_text("utf-8")
    assert "`iso20022-status-reasons.json`" in sources
    assert "a325faf8720308b74e03f6058c3308a8976bf070" in sources
