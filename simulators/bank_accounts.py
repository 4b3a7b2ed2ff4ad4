"""The simulated bank's view of payee accounts: which creditor accounts are good and which make a payment come
back (退匯), and why.

A real payment is returned because of the account it names, not because of the payment: an account that is
closed stays closed, so a payroll paying the same people every month is returned for the same people every
month, and an agency that corrects the account number is (usually) paid the next time. The ledger draws each
account's standing from a seeded hash of what the pain.001 carries about it — creditor bank, branch and
account number, and the payee's id and name — so a run is reproducible and needs no state:

- ``AC01`` (incorrect account number) and ``AC04`` (closed account) belong to the account alone (bank,
  branch, number): every payee paid into it gets the same answer, and a corrected number is a fresh draw;
- ``BE01`` (inconsistent with end customer: the name/ID does not match the account holder) belongs to the
  account *and* the payee named: correcting either the number or the payee's id/name is a fresh draw.

Each of the three takes a third of ``return_rate``, which stays the total share of bad accounts (what
``--return-rate`` has always meant).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

WRONG_NUMBER = "AC01"
CLOSED = "AC04"
NAME_MISMATCH = "BE01"
RETURN_REASONS = (WRONG_NUMBER, CLOSED, NAME_MISMATCH)
"""Why a payment is returned (退匯): wrong account number, closed account, name/ID not matching the account."""


@dataclass(frozen=True)
class PayeeAccount:
    """A creditor account as the transfer message names it (pain.001 ``CdtrAgt``, ``CdtrAcct``, ``Cdtr``)."""

    bank_code: str
    branch_code: str
    account_number: str
    payee_id: str
    payee_name: str

    @classmethod
    def of(cls, payment) -> PayeeAccount:
        """The account of a :class:`gateway.bank.payments.Payment` or a pain.001 ``OrderedPayment``."""
        return cls(payment.bank_code, payment.branch_code, payment.account_number, payment.payee_id,
                   payment.payee_name)


def _draw(seed: int, *parts: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the parts (NUL-separated: no two tuples collide)."""
    digest = hashlib.sha256("\0".join((str(seed), *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class AccountLedger:
    """The standing of every payee account, drawn from ``seed``; ``return_rate`` is the share of bad ones."""

    seed: int = 0
    return_rate: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 <= self.return_rate <= 1.0:
            raise ValueError(f"a return rate is a share in [0, 1], not {self.return_rate!r}")

    def reason(self, account: PayeeAccount) -> str | None:
        """The return reason for a payment into ``account`` (AC01, AC04, BE01), or None: it is paid."""
        third = self.return_rate / 3
        held = _draw(self.seed, "account", account.bank_code, account.branch_code, account.account_number)
        if held < third:
            return WRONG_NUMBER
        if held < 2 * third:
            return CLOSED
        # the account exists and is open: does the payee named match its holder? Conditional on getting here,
        # so that BE01 is a third of all accounts too (and every one when return_rate is 1).
        open_share = 1 - 2 * third
        holder = _draw(self.seed, "holder", account.bank_code, account.branch_code, account.account_number,
                       account.payee_id, account.payee_name)
        if open_share > 0 and holder < third / open_share:
            return NAME_MISMATCH
        return None
