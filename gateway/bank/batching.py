"""Cut accepted payment lines into transfer messages: which payment goes into which pain.001, under which ids.

Why the ids are derived, not drawn: the gateway must be able to crash after publishing a transfer message and
before recording that it did, and then plan again. If the same payments came back under a new MsgId, the bank
would execute them twice; derived from the EndToEndIds a message carries, the retry carries the same MsgId and
PmtInfIds, so the bank refuses it as a duplicate message (DU01) instead of paying twice, and our own store can
recognise it too. So the plan is a pure function of the *set* of payments: the order they arrive in (from a
database query, from several treasury workers) must not change a single id or the placement of any payment.

Why group by (method, execution date): in pain.001 the payment method (PmtMtd, category purpose) and the
requested execution date belong to the payment information block (PmtInf), not to the transaction, so every
transaction of one block shares them. Why a cap per message: the bank's file limits, the size our own XML
limits admit on the way back (the pain.002 answering a message has one entry per transaction), and the time
one signature takes. A group bigger than the room left in a message is split across messages.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.bank.payments import MAX_ISO_ID, Payment

PAYMENT_METHODS = frozenset({"CreditTransfer", "EntrustedTransfer", "TreasuryCheque"})
"""The voucher's PaymentMethodKind values (schemas/voucher.xsd PaymentMethodType)."""

DEFAULT_MAX_PER_MESSAGE = 5000
"""Transactions per transfer message unless configured otherwise: the most one voucher may carry."""

MAX_GROUPS_PER_MESSAGE = 99
"""PmtInfId ends in a two-digit group number, so a message holds at most 99 payment groups."""

MESSAGE_ID_PREFIX = "VGW"
# Domain separation: this hash names transfer messages and nothing else, in this version of the id scheme.
_MESSAGE_ID_DOMAIN = b"vgw pain.001 message id 1\x00"


@dataclass(frozen=True)
class PaymentGroup:
    """One PmtInf block: payments of one method and execution date, sorted by EndToEndId."""

    payment_info_id: str
    method: str
    execution_date: datetime.date
    payments: tuple[Payment, ...]
    control_sum: int
    count: int

    def __post_init__(self) -> None:
        if not 0 < len(self.payment_info_id) <= MAX_ISO_ID:
            raise ValueError(f"PmtInfId {self.payment_info_id!r} is not 1 to {MAX_ISO_ID} characters")
        if self.method not in PAYMENT_METHODS:
            raise ValueError(f"unknown payment method {self.method!r}")
        if not self.payments:
            raise ValueError("a payment group holds at least one payment")
        if any(p.method != self.method or p.execution_date != self.execution_date for p in self.payments):
            raise ValueError(f"group {self.payment_info_id} mixes methods or execution dates")
        ids = [p.end_to_end_id for p in self.payments]
        if ids != sorted(ids) or len(set(ids)) != len(ids):
            raise ValueError(f"group {self.payment_info_id}: payments must be unique and sorted by EndToEndId")
        if self.count != len(self.payments) or self.control_sum != sum(p.amount for p in self.payments):
            raise ValueError(f"group {self.payment_info_id}: count or control sum does not match its payments")


@dataclass(frozen=True)
class TransferPlan:
    """One transfer message (one pain.001): its MsgId, its payment groups, and their totals."""

    message_id: str
    groups: tuple[PaymentGroup, ...]
    control_sum: int
    count: int

    def __post_init__(self) -> None:
        if not 0 < len(self.message_id) <= MAX_ISO_ID:
            raise ValueError(f"MsgId {self.message_id!r} is not 1 to {MAX_ISO_ID} characters")
        if not 0 < len(self.groups) <= MAX_GROUPS_PER_MESSAGE:
            raise ValueError(f"a transfer message holds 1 to {MAX_GROUPS_PER_MESSAGE} payment groups")
        if len({g.payment_info_id for g in self.groups}) != len(self.groups):
            raise ValueError(f"message {self.message_id}: PmtInfIds repeat")
        if self.count != sum(g.count for g in self.groups) or \
                self.control_sum != sum(g.control_sum for g in self.groups):
            raise ValueError(f"message {self.message_id}: count or control sum does not match its groups")

    @property
    def payments(self) -> tuple[Payment, ...]:
        """Every payment of the message, group by group."""
        return tuple(p for g in self.groups for p in g.payments)

    @property
    def end_to_end_ids(self) -> tuple[str, ...]:
        return tuple(p.end_to_end_id for p in self.payments)


def _group_key(payment: Payment) -> tuple[datetime.date, str]:
    return payment.execution_date, payment.method


def message_id_for(end_to_end_ids: Iterable[str], first_execution_date: datetime.date) -> str:
    """``VGW`` + the earliest execution date (yyyymmdd) + ``-`` + 16 hex digits of SHA-256 over the sorted
    EndToEndIds, e.g. ``VGW20250312-3f9a0c1e2d4b5a69`` (28 characters, within Max35Text).

    The date is for people reading bank logs; the hash makes the id a function of exactly which payments the
    message carries. 64 bits are plenty: a collision needs two different sets of payments planned with the
    same execution date, and the bank would then refuse the second as a duplicate (DU01), not pay it twice."""
    material = _MESSAGE_ID_DOMAIN + "\n".join(sorted(end_to_end_ids)).encode("ascii")
    return f"{MESSAGE_ID_PREFIX}{first_execution_date:%Y%m%d}-{hashlib.sha256(material).hexdigest()[:16]}"


def payment_info_id_for(message_id: str, index: int) -> str:
    """``MsgId-NN``: the payment group's 1-based position in its message, two digits (31 characters)."""
    if not 1 <= index <= MAX_GROUPS_PER_MESSAGE:
        raise ValueError(f"group index {index} out of 1..{MAX_GROUPS_PER_MESSAGE}")
    return f"{message_id}-{index:02d}"


def plan_transfers(payments: Iterable[Payment], *, max_per_message: int = DEFAULT_MAX_PER_MESSAGE
                   ) -> list[TransferPlan]:
    """The transfer messages for ``payments``: each payment in exactly one message, ids derived as above.

    Payments are ordered by (execution date, method, EndToEndId) and poured into messages in that order,
    filling each message up to ``max_per_message`` transactions (and :data:`MAX_GROUPS_PER_MESSAGE` groups)
    before the next is begun, so the fewest messages are sent and a group is split only at a message's end.
    Within a message, each (method, execution date) run is one payment group. The result depends only on the
    set of payments and the cap. Two payments with the same EndToEndId are a programming error (ValueError):
    the EndToEndId is what makes a line unique at the bank.
    """
    if isinstance(max_per_message, bool) or not isinstance(max_per_message, int) or max_per_message < 1:
        raise ValueError(f"max_per_message must be a positive whole number, not {max_per_message!r}")
    ordered = sorted(payments, key=lambda p: (_group_key(p), p.end_to_end_id))
    seen: set[str] = set()
    for payment in ordered:
        if payment.end_to_end_id in seen:
            raise ValueError(f"EndToEndId {payment.end_to_end_id} occurs more than once")
        seen.add(payment.end_to_end_id)

    messages: list[list[list[Payment]]] = []  # message -> runs of one group key
    current: list[list[Payment]] = []
    room = 0
    for payment in ordered:
        new_run = not current or _group_key(current[-1][-1]) != _group_key(payment)
        if room == 0 or (new_run and len(current) == MAX_GROUPS_PER_MESSAGE):
            current = []
            messages.append(current)
            room = max_per_message
            new_run = True
        if new_run:
            current.append([])
        current[-1].append(payment)
        room -= 1
    return [_plan(runs) for runs in messages]


def _plan(runs: list[list[Payment]]) -> TransferPlan:
    ids = [p.end_to_end_id for run in runs for p in run]
    message_id = message_id_for(ids, runs[0][0].execution_date)
    groups = tuple(
        PaymentGroup(payment_info_id=payment_info_id_for(message_id, index), method=run[0].method,
                     execution_date=run[0].execution_date, payments=tuple(run),
                     control_sum=sum(p.amount for p in run), count=len(run))
        for index, run in enumerate(runs, start=1))
    return TransferPlan(message_id=message_id, groups=groups, control_sum=sum(g.control_sum for g in groups),
                        count=sum(g.count for g in groups))
