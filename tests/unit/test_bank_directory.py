"""The FISC bank/branch directory: the shipped data, lookups, and small hand-built directories."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.vouchers.bank_directory import CSV_HEADER, BankDirectory, Branch


def _raw_csv_rows() -> list[list[str]]:
    """The shipped CSV read independently of the module under test."""
    data = resources.files("gateway").joinpath("data", "fisc-bank-branches.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # FISC ships it with a byte-order mark
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert tuple(rows[0]) == CSV_HEADER
    return rows[1:]


RAW_ROWS = _raw_csv_rows()
RAW_BRANCH_KEYS = {(r[0], r[1]) for r in RAW_ROWS if r[1]}


# --- the shipped data ----------------------------------------------------------------------------------------


def test_shipped_list_has_5288_rows_of_which_4992_are_branches() -> None:
    assert len(RAW_ROWS) == 5288
    assert sum(1 for r in RAW_ROWS if not r[1]) == 296  # head offices (bank 952 has two)
    assert len(RAW_BRANCH_KEYS) == 4992  # no duplicate (bank, branch) pairs
    assert len(BankDirectory.shipped()) == 4992


def test_shipped_directory_is_built_once() -> None:
    assert BankDirectory.shipped() is BankDirectory.shipped()


def test_bank_of_taiwan_head_office_department() -> None:
    directory = BankDirectory.shipped()
    branch = directory.branch("004", "0037")
    assert branch == Branch("004", "0037", "臺灣銀行", "營業部", "台北市中正區重慶南路一段１２０號")
    assert directory.bank_name("004") == "臺灣銀行"


def test_taipei_fubon_treasury_branch() -> None:
    # 公庫處: Taipei Fubon's branch at Taipei City Hall, which holds the city treasury's accounts.
    directory = BankDirectory.shipped()
    assert directory.has_branch("012", "2102")
    branch = directory.branch("012", "2102")
    assert branch is not None
    assert (branch.bank_name, branch.branch_name) == ("台北富邦商業銀行", "公庫處")
    assert branch.address == "台北市信義區市府路１號Ｂ１"


def test_unknown_branches_and_banks_are_absent() -> None:
    directory = BankDirectory.shipped()
    assert not directory.has_branch("004", "9999")
    assert directory.branch("004", "9999") is None
    assert not directory.has_branch("004", "")  # a head office is not a branch
    assert not directory.has_branch("4", "0037")  # codes are compared as text, zero-padded
    assert not directory.has_branch("004", "37")
    assert directory.bank_name("999") is None
    assert directory.branches_of("999") == []


def test_bank_name_comes_from_the_first_head_office_row() -> None:
    # Bank 952 has two head-office rows and branch rows named after member associations.
    directory = BankDirectory.shipped()
    assert directory.bank_name("952") == "財團法人農漁會南區資訊中心"
    member = directory.branch("952", "0103")
    assert member is not None
    assert (member.bank_name, member.branch_name) == ("小港區農會", "小港區農會")


def test_branches_of_a_bank() -> None:
    directory = BankDirectory.shipped()
    fubon = directory.branches_of("012")
    assert {b.bank_code for b in fubon} == {"012"}
    assert len(fubon) == sum(1 for r in RAW_ROWS if r[0] == "012" and r[1])
    assert directory.branch("012", "2102") in fubon
    fubon.clear()  # callers get a copy
    assert directory.branches_of("012")


def test_remittance_banks() -> None:
    directory = BankDirectory.shipped()
    banks = directory.remittance_banks()
    assert "004" in banks and "012" in banks
    assert banks == sorted(banks)
    assert len(banks) == 79
    assert all(directory.branches_of(code) for code in banks)
    assert directory.is_remittance_bank("004")
    assert not directory.is_remittance_bank("999")


def test_remittance_banks_without_branches_are_not_offered() -> None:
    # The remittance list names 600 and 997 (data centres with only a head-office row) and 815 (日盛,
    # merged away, absent from the FISC list). They are on the list but have no branch a payee can be at.
    directory = BankDirectory.shipped()
    raw = resources.files("gateway").joinpath("data", "fisc-remittance-banks.json").read_bytes()
    listed = {entry["code"] for entry in json.loads(raw)}
    assert len(listed) == 82
    assert listed - set(directory.remittance_banks()) == {"600", "815", "997"}
    assert directory.is_remittance_bank("815")
    assert directory.bank_name("815") is None


def test_every_listed_branch_is_found() -> None:
    directory = BankDirectory.shipped()
    for bank, branch, bank_name, branch_name, address in RAW_ROWS:
        if branch:
            assert directory.branch(bank, branch) == Branch(bank, branch, bank_name, branch_name, address)


@given(st.from_regex(r"[0-9]{3}", fullmatch=True), st.from_regex(r"[0-9]{4}", fullmatch=True))
def test_has_branch_agrees_with_the_csv(bank: str, branch: str) -> None:
    assert BankDirectory.shipped().has_branch(bank, branch) == ((bank, branch) in RAW_BRANCH_KEYS)


# --- hand-built directories ----------------------------------------------------------------------------------


def test_tiny_directory_from_two_rows() -> None:
    head = Branch("004", "", "臺灣銀行", "", "台北市中正區重慶南路一段１２０號")
    branch = Branch("004", "0037", "臺灣銀行", "營業部", "台北市中正區重慶南路一段１２０號")
    directory = BankDirectory([head, branch], remittance_codes=["004", "005"])
    assert len(directory) == 1
    assert directory.has_branch("004", "0037")
    assert directory.branch("004", "0037") is branch
    assert not directory.has_branch("004", "0059")
    assert directory.bank_name("004") == "臺灣銀行"
    assert directory.branches_of("004") == [branch]
    assert directory.is_remittance_bank("005")
    assert directory.remittance_banks() == ["004"]  # 005 has no branch here


def test_bank_name_falls_back_to_a_branch_row() -> None:
    directory = BankDirectory([Branch("123", "4567", "某銀行", "某分行", "")])
    assert directory.bank_name("123") == "某銀行"
    assert directory.remittance_banks() == []
    assert not directory.is_remittance_bank("123")


def test_duplicate_branch_is_refused() -> None:
    row = Branch("004", "0037", "臺灣銀行", "營業部", "")
    with pytest.raises(ValueError, match="004-0037"):
        BankDirectory([row, dataclasses.replace(row, branch_name="其他")])


def test_branch_is_immutable() -> None:
    row = Branch("004", "0037", "臺灣銀行", "營業部", "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.branch_name = "其他"  # type: ignore[misc]
