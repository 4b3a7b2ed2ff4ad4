"""The treasury checks (財政局) right after release: the allotted budget, and the duplicate-payment guard.

Pure: the adapter reads a snapshot (the key's balance, earlier payments to the same accounts), this module
decides, and the store applies the decision with a conditional update that refuses it if the balance moved
in between (then the adapter reads again and this module decides again). So the decision is made here,
and "never negative, also under concurrent releases" is enforced where the money is kept.

The rules, in order:
1. no allotment for (agency, fiscal year, budget subject) -> rejected (退件), ``budget-subject-wrong``;
2. the voucher's total is over what remains -> rejected, ``budget-exceeded``;
3. some payee line matches a line of another voucher (same bank, branch, account, amount and purpose)
   that is pending or paid within the window -> held for a treasury operator (the amount is reserved
   meanwhile): a second payment must be a decision, never an accident;
4. otherwise accepted (the amount is reserved).
"""

from __future__ import annotations

import datetime
import hashlib
import unicodedata
from dataclasses import dataclass

from gateway.treasury.budget import BudgetBalance, BudgetKey
from gateway.vouchers.model import Voucher
from gateway.workflow.actions import Reason, ReasonCode
from gateway.workflow.transitions import Event

DEFAULT_DUPLICATE_WINDOW = datetime.timedelta(days=90)
"""How far back the duplicate-payment guard looks (configurable per deployment)."""

_PAYEE_KEY_DOMAIN = b"vgw payee line 1\x00"


def payee_key(bank: str, branch: str, account: str, amount: int, purpose: str) -> str:
    """The duplicate guard's key of one payment line: who gets how much for what, as one digest.

    The purpose is compared after Unicode NFKC normalisation and with runs of white space collapsed, so
    full-width and half-width spellings of the same text match.
    """
    normalised = " ".join(unicodedata.normalize("NFKC", purpose).split())
    material = "\x00".join((bank, branch, account, str(amount), normalised)).encode("utf-8")
    return hashlib.sha256(_PAYEE_KEY_DOMAIN + material).hexdigest()


def payee_keys(voucher: Voucher) -> list[tuple[int, str]]:
    """(line number, payee key) of every line of ``voucher``."""
    return [(line.number, payee_key(line.bank_code, line.branch_code, line.account_number, line.amount,
                                    voucher.purpose)) for line in voucher.lines]


@dataclass(frozen=True)
class EarlierPayment:
    """A line of another voucher that the guard found for the same key, pending or paid."""

    voucher_id: str
    revision: int
    line_number: int
    status: str


@dataclass(frozen=True)
class TreasuryVerdict:
    event: Event
    reason: Reason | None = None
    duplicates: tuple[EarlierPayment, ...] = ()

    @property
    def reserves(self) -> bool:
        return self.event in (Event.TREASURY_ACCEPT, Event.TREASURY_HOLD)

    def detail(self) -> dict:
        """What the audit log keeps of the decision."""
        out: dict = {}
        if self.reason is not None:
            out.update(reason_code=self.reason.code.value, reason=self.reason.text)
        if self.duplicates:
            out["duplicates"] = [{"voucher_id": d.voucher_id, "revision": d.revision, "line": d.line_number,
                                  "status": d.status} for d in self.duplicates]
        return out


def decide_treasury(*, key: BudgetKey, amount: int, balance: BudgetBalance | None,
                    earlier: list[EarlierPayment]) -> TreasuryVerdict:
    """The treasury's decision on a released voucher of total ``amount`` (see the module for the rules)."""
    if balance is None:
        return TreasuryVerdict(Event.TREASURY_REJECT, Reason(
            ReasonCode.BUDGET_SUBJECT_WRONG, f"no allotted budget (歲出分配預算) for {key}"))
    if amount > balance.remaining:
        return TreasuryVerdict(Event.TREASURY_REJECT, Reason(
            ReasonCode.BUDGET_EXCEEDED, f"NT$ {amount:,} is more than the NT$ {balance.remaining:,} that remains of "
            f"the allotment for {key}"))
    if earlier:
        first = earlier[0]
        return TreasuryVerdict(Event.TREASURY_HOLD, Reason(
            ReasonCode.DUPLICATE_PAYMENT, f"{len(earlier)} line(s) match earlier payments to the same account, "
            f"amount and purpose (first: {first.voucher_id} revision {first.revision} line {first.line_number}, "
            f"{first.status}); held for a treasury operator"), tuple(earlier))
    return TreasuryVerdict(Event.TREASURY_ACCEPT)
