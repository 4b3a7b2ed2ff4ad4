"""The FISC list of banks and branches, used to check the payee account's bank and branch on a voucher.

A Taiwan branch code is four digits, the last of which is a check digit, but each bank computes that digit
its own way (and some codes predate any rule). A formula would therefore refuse real branches or accept
made-up ones; the published list is the only reliable answer to "does branch 0037 of bank 004 exist?".

The data ships inside the package (see ``gateway/data/SOURCES.md``):

- ``fisc-bank-branches.csv``: FISC (財金資訊股份有限公司) open data, every head office and branch. A head
  office row has an empty branch code. Some codes are shared by several farmers' and fishermen's
  associations, so the institution name on a branch row can differ from the head office's name.
- ``fisc-remittance-banks.json``: the banks reachable by FISC interbank remittance.

Both are read once per process; lookups are dictionary lookups and do no I/O.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

__all__ = ["Branch", "BankDirectory", "CSV_HEADER"]

CSV_HEADER = ("銀行代號/總機構代碼", "分支機構代號", "金融機構名稱", "分支機構名稱", "地址")
"""The header the shipped CSV must have; a refreshed file with other columns is refused rather than misread."""


@dataclass(frozen=True)
class Branch:
    """One row of the FISC list. ``branch_code`` is ``""`` for a head-office row."""

    bank_code: str
    """Three digits, e.g. ``"004"``."""
    branch_code: str
    """Four digits, e.g. ``"0037"``, or ``""`` for the head office."""
    bank_name: str
    branch_name: str
    address: str


class BankDirectory:
    """Banks and branches, looked up by code.

    Built from rows (head-office rows with an empty branch code, and branch rows) and the codes of banks
    reachable by interbank remittance. Use :meth:`shipped` for the list that ships with the gateway.
    """

    def __init__(self, rows: Iterable[Branch], remittance_codes: Iterable[str] = ()) -> None:
        self._branches: dict[tuple[str, str], Branch] = {}
        self._by_bank: dict[str, list[Branch]] = {}
        self._bank_names: dict[str, str] = {}
        head_office_named: set[str] = set()
        for row in rows:
            if not row.branch_code:
                # The first head-office row names the bank (bank 952 has two head-office rows).
                if row.bank_code not in head_office_named:
                    self._bank_names[row.bank_code] = row.bank_name
                    head_office_named.add(row.bank_code)
                continue
            key = (row.bank_code, row.branch_code)
            if key in self._branches:
                raise ValueError(f"duplicate branch {row.bank_code}-{row.branch_code} in the bank list")
            self._branches[key] = row
            self._by_bank.setdefault(row.bank_code, []).append(row)
            self._bank_names.setdefault(row.bank_code, row.bank_name)
        self._remittance = frozenset(remittance_codes)

    @classmethod
    def shipped(cls) -> BankDirectory:
        """The directory built from the package data, loaded once per process and shared."""
        return _shipped_directory()

    def branch(self, bank_code: str, branch_code: str) -> Branch | None:
        """The branch row, or None when the list has no such branch."""
        return self._branches.get((bank_code, branch_code))

    def has_branch(self, bank_code: str, branch_code: str) -> bool:
        """Whether the list has this branch. A head office (empty branch code) is not a branch."""
        return (bank_code, branch_code) in self._branches

    def bank_name(self, bank_code: str) -> str | None:
        """The institution's name from its head-office row, or None for an unknown bank code."""
        return self._bank_names.get(bank_code)

    def is_remittance_bank(self, bank_code: str) -> bool:
        """Whether the remittance list names this bank (whether or not the branch list has branches for it)."""
        return bank_code in self._remittance

    def branches_of(self, bank_code: str) -> list[Branch]:
        """The bank's branch rows in list order (empty for an unknown bank or one without branches)."""
        return list(self._by_bank.get(bank_code, ()))

    def remittance_banks(self) -> list[str]:
        """Sorted codes of remittance banks that have at least one branch, i.e. that a payee can be at."""
        return sorted(code for code in self._remittance if code in self._by_bank)

    def __len__(self) -> int:
        """The number of branch rows (head-office rows not counted)."""
        return len(self._branches)


def _data_text(name: str) -> str:
    # Bytes then decode, so line endings reach the csv module untouched; utf-8-sig drops FISC's byte-order mark.
    return resources.files("gateway").joinpath("data", name).read_bytes().decode("utf-8-sig")


@functools.cache
def _shipped_rows() -> tuple[Branch, ...]:
    reader = csv.reader(io.StringIO(_data_text("fisc-bank-branches.csv"), newline=""))
    header = tuple(next(reader))
    if header != CSV_HEADER:
        raise ValueError(f"unexpected header in fisc-bank-branches.csv: {header!r}")
    rows: list[Branch] = []
    for row in reader:
        if len(row) != len(CSV_HEADER):
            raise ValueError(f"fisc-bank-branches.csv line {reader.line_num}: {len(row)} fields, expected 5")
        rows.append(Branch(*row))
    return tuple(rows)


@functools.cache
def _shipped_remittance_codes() -> frozenset[str]:
    return frozenset(entry["code"] for entry in json.loads(_data_text("fisc-remittance-banks.json")))


@functools.cache
def _shipped_directory() -> BankDirectory:
    return BankDirectory(_shipped_rows(), _shipped_remittance_codes())
