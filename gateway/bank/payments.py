"""The values the bank exchange is made of: one payment line to send, and one outcome the bank reports.

Shared by the outbound side (batching accepted lines into pain.001, ``gateway/bank/pain001.py``) and the inbound
side (pain.002 and camt.054 read into outcomes, ``gateway/bank/reports.py``), and by the storage adapters.
Pure values that check themselves: an adapter cannot store a payment of NT$ 0 or an id longer than ISO
20022 allows.

Why the EndToEndId is the key of everything: it is the one reference the bank must carry unchanged from
the transfer order to every status report and booking notification, so it is how an acknowledgement finds
its payment line, how the bank side detects a duplicate, and how reconciliation proves nothing was sent
twice. It is derived from (voucher, revision, line) alone, so it is the same on every retry.
"""

from __future__ import annotations

import datetime
import enum
import re
from dataclasses import dataclass

from gateway.vouchers.model import Notice
from gateway.vouchers.model import voucher_id as _voucher_id

MAX_ISO_ID = 35
"""Max35Text: the longest MsgId, PmtInfId and EndToEndId ISO 20022 allows."""

_E2E = re.compile(r"(?P<agency>[0-9]{9}[A-Z0-9])(?P<year>[0-9]{3})(?P<number>[0-9A-Z]{1,12})"
                  r"R(?P<revision>[0-9]{3})L(?P<line>[0-9]{4})")


def end_to_end_id(voucher_agency: str, fiscal_year: int, voucher_number: str, revision: int, line: int) -> str:
    """The stable EndToEndId of one payment line: ``AGENCY YEAR NUMBER R rev L line`` without separators,
    e.g. ``379000000A115000123R001L0001`` (at most 10+3+12+4+5 = 34 characters, within Max35Text).

    Separators are left out because some bank systems strip punctuation from references; the fixed-width
    parts still parse back unambiguously (:func:`parse_end_to_end_id`)."""
    if not 1 <= revision <= 999 or not 1 <= line <= 9999:
        raise ValueError(f"revision {revision} or line {line} out of range for an EndToEndId")
    value = f"{voucher_agency}{fiscal_year:03d}{voucher_number}R{revision:03d}L{line:04d}"
    if _E2E.fullmatch(value) is None or len(value) > MAX_ISO_ID:
        raise ValueError(f"cannot form an EndToEndId from {voucher_agency!r}, {fiscal_year}, {voucher_number!r}")
    return value


def parse_end_to_end_id(value: str) -> tuple[str, int, int] | None:
    """(voucher id, revision, line) of one of our EndToEndIds, or None for anything else."""
    match = _E2E.fullmatch(value)
    if match is None:
        return None
    return (_voucher_id(match["agency"], int(match["year"]), match["number"]),
            int(match["revision"]), int(match["line"]))


class LineState(enum.Enum):
    """Where one payment line stands at the bank. ``pending``: in a transfer message, no answer yet;
    ``accepted``: the bank accepted it for execution (pain.002 ACCP/ACSP/ACTC); ``paid``: settled into the
    payee's account (pain.002 ACSC or a camt.054 booking); ``returned``: 退匯, rejected before settlement
    or returned after it. Paid and returned are final, except that a paid line can still be returned."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    PAID = "paid"
    RETURNED = "returned"


@dataclass(frozen=True)
class Payment:
    """One treasury-accepted payment line, as it goes to the bank."""

    end_to_end_id: str
    voucher_id: str
    revision: int
    line_number: int
    agency: str
    amount: int  # whole NT$
    payee_name: str
    payee_id: str
    bank_code: str  # 3 digits
    branch_code: str  # 4 digits
    account_number: str
    method: str  # PaymentMethodKind value: CreditTransfer | EntrustedTransfer | TreasuryCheque
    execution_date: datetime.date  # requested execution date (the voucher's due date, never before today)
    remittance: str  # unstructured remittance text: purpose, at most 140 characters
    notice: Notice | None = None  # where the payee's deposit notice goes (not sent to the bank)

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount <= 0:
            raise ValueError(f"a payment amount is a positive whole NT$ amount, not {self.amount!r}")
        if parse_end_to_end_id(self.end_to_end_id) != (self.voucher_id, self.revision, self.line_number):
            raise ValueError(f"EndToEndId {self.end_to_end_id!r} does not name {self.voucher_id}#{self.revision} "
                             f"line {self.line_number}")
        if len(self.remittance) > 140:
            raise ValueError("remittance text is at most 140 characters (Max140Text)")


class OutcomeKind(enum.Enum):
    """What a bank report says happened to a payment (or to every payment of a message or payment group)."""

    ACCEPTED = "accepted"  # taken for execution; not final
    PAID = "paid"  # settled, credited to the payee
    REJECTED = "rejected"  # refused before settlement (退匯 from the agency's point of view)
    RETURNED = "returned"  # paid and then returned by the payee's bank (退匯 after settlement)


@dataclass(frozen=True)
class BankOutcome:
    """One thing a bank report says. Its scope is the most specific reference named: ``end_to_end_id`` (one
    payment), else ``original_payment_info_id`` (every payment of that group), else ``original_message_id``
    alone (every payment of that transfer message, e.g. a whole-file AM10 rejection).

    An outcome about one payment also carries the message and group the bank says it was sent in (a pain.002
    always names both; a camt.054 booking when its ``Refs`` give ``MsgId`` / ``PmtInfId``) and, when given, its
    instruction id: the line must have been sent under exactly those (gateway/bank/binding.py)."""

    kind: OutcomeKind
    original_message_id: str | None = None
    original_payment_info_id: str | None = None
    end_to_end_id: str | None = None
    amount: int | None = None  # whole NT$, when the report states it
    reason_code: str | None = None  # ISO external status reason code, e.g. AC01
    reason_text: str | None = None  # the bank's additional information, if any
    bank_reference: str | None = None  # AcctSvcrRef / TxId: the bank's own reference
    booked_on: datetime.date | None = None
    instruction_id: str | None = None  # OrgnlInstrId (pain.002) / Refs/InstrId (camt.054), when given

    def __post_init__(self) -> None:
        if not (self.end_to_end_id or self.original_payment_info_id or self.original_message_id):
            raise ValueError("a bank outcome names a payment, a payment group or a message")
        if self.amount is not None and (not isinstance(self.amount, int) or isinstance(self.amount, bool)):
            raise ValueError(f"an outcome amount is whole NT$, not {self.amount!r}")


UNMATCHED_REASONS = frozenset({"no-end-to-end-id", "credit-without-return", "debit-with-return", "reversal"})
"""Why a report item names no payment of ours (:class:`UnmatchedItem`): it carries no EndToEndId (absent or
``NOTPROVIDED``), it is money in that is not a return (a citizen paying the city), a debit that returns money
someone sent us, or the bank reversing an earlier booking (RvslInd) — which a person must look at."""


@dataclass(frozen=True)
class UnmatchedItem:
    """One thing a report says that cannot become an outcome, kept so that reconciliation and an operator see
    it rather than the reader dropping it: a booking or status without a usable EndToEndId, or a booking that
    is not about one of our payments. ``kind`` is what it would have meant had it named a payment."""

    why: str  # one of UNMATCHED_REASONS
    end_to_end_id: str | None = None  # as the bank wrote it (e.g. NOTPROVIDED), if at all
    kind: OutcomeKind | None = None
    amount: int | None = None  # whole NT$
    credit_debit: str | None = None  # camt.054: "CRDT" | "DBIT"
    reason_code: str | None = None
    bank_reference: str | None = None
    booked_on: datetime.date | None = None

    def __post_init__(self) -> None:
        if self.why not in UNMATCHED_REASONS:
            raise ValueError(f"unknown reason {self.why!r} for an unmatched report item")
        if self.amount is not None and (not isinstance(self.amount, int) or isinstance(self.amount, bool)):
            raise ValueError(f"an amount is whole NT$, not {self.amount!r}")
        if self.credit_debit not in (None, "CRDT", "DBIT"):
            raise ValueError(f"credit/debit is CRDT or DBIT, not {self.credit_debit!r}")


@dataclass(frozen=True)
class OriginalBlock:
    """What a pain.002 says of one payment-information block of the message it answers (``OrgnlPmtInfAndSts``):
    its id and, when the bank repeats them, its number of transactions and control sum."""

    payment_info_id: str
    count: int | None = None
    control_sum: int | None = None  # whole NT$


@dataclass(frozen=True)
class OriginalMessage:
    """What a pain.002 says of the transfer message it answers (``OrgnlGrpInfAndSts`` and the blocks): the
    facts gateway/bank/binding.py compares with the message as sent."""

    message_id: str
    message_name: str  # OrgnlMsgNmId: the ISO type answered, ours is pain.001.001.09
    created_at: datetime.datetime | None = None  # OrgnlCreDtTm
    count: int | None = None  # OrgnlNbOfTxs
    control_sum: int | None = None  # OrgnlCtrlSum, whole NT$
    blocks: tuple[OriginalBlock, ...] = ()


@dataclass(frozen=True)
class BankReport:
    """One inbound bank message read: its own id, its ISO type, when the bank made it, what it says.

    ``outcomes`` are in the order they should be applied: in a pain.002 the transaction-level details come
    first, then payment-group and message-level statuses, so a line that has its own detail has already
    moved when the broader statement reaches it (see gateway/bank/reports.py). ``unmatched`` lists what names
    no payment of ours; it defaults to empty so that reports built elsewhere need not mention it."""

    message_id: str
    message_type: str  # "pain.002.001.10" | "camt.054.001.08"
    created_at: datetime.datetime
    outcomes: tuple[BankOutcome, ...]
    unmatched: tuple[UnmatchedItem, ...] = ()
    original: OriginalMessage | None = None
    """A pain.002's account of the message it answers; None for a camt.054 (its bookings name their own)."""
