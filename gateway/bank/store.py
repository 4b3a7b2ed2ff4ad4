"""The storage port of the bank exchange: batches written with their outbox rows, reports with their effects.

Pure: record types and the Protocol the SQL stores satisfy (adapters/storage/bank.py). Every method that
changes something is ONE transaction, which is what makes the exchange exactly-once:

- :meth:`BankLedger.record_batch` writes the vouchers' move to ``batched``, their payment lines and the
  signed transfer message (the outbox row) together; a crash leaves all or nothing, never a line that is
  batched but in no message, or a message nobody will send.
- :meth:`BankLedger.mark_sent` is the relay's only write, after the broker confirmed: a crash in between
  sends the same bytes again (same MsgId and EndToEndIds), which the bank detects as a duplicate.
- :meth:`BankLedger.record_report` stores the bank's signed report with every line and voucher change and
  budget move it causes; the report's (type, id) is unique, so processing it twice changes nothing.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from gateway.bank.payments import LineState, Payment
from gateway.errors import GatewayError
from gateway.store import AuditEvent, StatusChange, utc

MONEY_MOVES = ("consume", "free-reserved", "free-consumed")


@dataclass(frozen=True)
class BankMessageRecord:
    """One signed bank message as stored: ours to the bank (``out``) or the bank's to us (``in``)."""

    direction: str  # "out" | "in"
    message_id: str
    message_type: str
    routing: str
    body: bytes
    sha256: str
    payment_count: int
    control_sum: int
    created_at: datetime.datetime
    sent_at: datetime.datetime | None = None

    def __post_init__(self) -> None:
        if self.direction not in ("out", "in"):
            raise ValueError(f"direction is out or in, not {self.direction!r}")
        if not self.message_id or len(self.message_id) > 35:
            raise ValueError(f"a message id is 1 to 35 characters, not {self.message_id!r}")
        if hashlib.sha256(self.body).hexdigest() != self.sha256:
            raise ValueError("sha256 does not match the message body")
        object.__setattr__(self, "created_at", utc(self.created_at, "created_at"))
        if self.sent_at is not None:
            object.__setattr__(self, "sent_at", utc(self.sent_at, "sent_at"))


@dataclass(frozen=True)
class BatchedPayment:
    """A payment line as written into a transfer message: which message and payment group carry it, and the
    budget key its amount is reserved on."""

    payment: Payment
    message_id: str
    payment_info_id: str
    fiscal_year: int
    budget_subject: str


@dataclass(frozen=True)
class BatchWrite:
    """One batching step: vouchers to ``batched``, their lines, the outbox messages and the audit events."""

    changes: tuple[StatusChange, ...]
    payments: tuple[BatchedPayment, ...]
    messages: tuple[BankMessageRecord, ...]
    events: tuple[AuditEvent, ...]

    def __post_init__(self) -> None:
        ids = {m.message_id for m in self.messages}
        if not self.messages or any(m.direction != "out" for m in self.messages):
            raise ValueError("a batch writes at least one outbound message")
        if any(p.message_id not in ids for p in self.payments):
            raise ValueError("every batched payment names a message of the batch")
        for message in self.messages:
            lines = [p.payment.amount for p in self.payments if p.message_id == message.message_id]
            if len(lines) != message.payment_count or sum(lines) != message.control_sum:
                raise ValueError(f"message {message.message_id} does not carry its stated count and control sum")


@dataclass(frozen=True)
class PaymentRow:
    """A payment line as stored, with where it stands at the bank."""

    end_to_end_id: str
    voucher_id: str
    revision: int
    line_number: int
    agency: str
    fiscal_year: int
    budget_subject: str
    amount: int
    message_id: str
    payment_info_id: str
    state: LineState
    reason_code: str | None
    reason_text: str | None
    bank_reference: str | None
    booked_on: datetime.date | None
    created_at: datetime.datetime
    changed_at: datetime.datetime
    unconfirmed_at: datetime.datetime | None


@dataclass(frozen=True)
class SentMessage:
    """What was stored of one outbound transfer message, without its bytes: what a report about it is compared
    with (gateway/bank/binding.py)."""

    message_id: str
    message_type: str
    payment_count: int
    control_sum: int
    created_at: datetime.datetime
    blocks: Mapping[str, tuple[int, int]]
    """PmtInfId → (lines, NT$ total) of each payment block, as the lines were stored."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", utc(self.created_at, "created_at"))


@dataclass(frozen=True)
class UnansweredMessage:
    """A sent transfer message that still has lines without a final answer (pending or accepted): what the
    worker needs to decide a re-send and audit it, without the message's bytes."""

    message_id: str
    sha256: str
    sent_at: datetime.datetime
    payment_count: int
    open_lines: int
    resends: int
    """How often it was made unsent again so far (automatically or by an operator)."""

    def __post_init__(self) -> None:
        if not 0 < self.open_lines <= self.payment_count:
            raise ValueError(f"{self.message_id}: {self.open_lines} open lines of {self.payment_count}")
        if self.resends < 0:
            raise ValueError("resends is not negative")
        object.__setattr__(self, "sent_at", utc(self.sent_at, "sent_at"))


class LineStatus(NamedTuple):
    """Where one line stands, and why if returned: what deciding a voucher's settlement reads."""

    line_number: int
    state: LineState
    reason_code: str | None


@dataclass(frozen=True)
class LineChange:
    """Move one payment line from ``expected`` to ``new`` (a compare-and-set) and move its money; the facts
    (reason, bank reference, booking date) are written where given and kept where None. ``expected`` may be
    ``new``: a report that adds facts to a line it does not move (gateway/bank/outcomes.py ``filled_facts``)."""

    end_to_end_id: str
    expected: LineState
    new: LineState
    money: str | None  # one of MONEY_MOVES, or None
    reason_code: str | None = None
    reason_text: str | None = None
    bank_reference: str | None = None
    booked_on: datetime.date | None = None
    expected_booked_on: datetime.date | None = None
    """The booking date the line had when read: the compare-and-set covers it too, so two reports filling in
    a booking date at once cannot both believe the line had none."""

    def __post_init__(self) -> None:
        if self.money is not None and self.money not in MONEY_MOVES:
            raise ValueError(f"unknown money move {self.money!r}")
        if self.expected is self.new and self.money is not None:
            raise ValueError("a change that keeps the line's state moves no money")

    @property
    def fills_in(self) -> bool:
        """True when the state stays and only facts are added (a booking date, a reference, a reason)."""
        return self.expected is self.new


@dataclass(frozen=True)
class ReportWrite:
    """Everything one bank report causes, in ONE transaction: the stored report, line changes with their money
    moves, and the audit events (one per voucher touched). Vouchers settle afterwards, on fresh reads
    (gateway/bank/settlement.py settlement_write)."""

    report: BankMessageRecord
    lines: tuple[LineChange, ...]
    events: tuple[AuditEvent, ...]
    at: datetime.datetime

    def __post_init__(self) -> None:
        if self.report.direction != "in":
            raise ValueError("a report write stores an inbound message")
        object.__setattr__(self, "at", utc(self.at, "at"))


class LineChanged(GatewayError):
    """A payment line's state moved since it was read (another consumer took a report); nothing was written.
    Read again and decide again."""


class ReportAlreadyStored(GatewayError):
    """A report with this type and id is stored already; nothing was written. ``same`` says whether its bytes
    are identical (a harmless repeat) or not (a conflicting report reusing an id)."""

    def __init__(self, message_id: str, same: bool) -> None:
        super().__init__(f"bank report {message_id} is already stored ({'same' if same else 'different'} bytes)")
        self.message_id = message_id
        self.same = same


class BankLedger(Protocol):
    """What the bank exchange keeps. Safe from several threads and processes, like the voucher store."""

    def record_batch(self, write: BatchWrite) -> None:
        """Apply ``write`` in ONE transaction, or nothing (:class:`gateway.store.StatusChanged` if a voucher is
        no longer treasury-accepted)."""

    def unsent_messages(self, limit: int = 100) -> list[BankMessageRecord]:
        """Outbound messages the broker has not confirmed yet, oldest first."""

    def relay_turn(self) -> bool:
        """True while this process holds the outbox relay's turn on this store, taking it if it is free: one
        relay at a time publishes, so relays in several processes do not publish every message twice. The
        turn passes on when the holder closes the store or dies. False when it cannot be asked."""

    def mark_sent(self, message_id: str, at: datetime.datetime) -> bool:
        """Record the broker's confirm; False when it was marked already (changes nothing)."""

    def mark_unsent(self, message_id: str, event: AuditEvent, *,
                    sent_before: datetime.datetime | None = None) -> bool:
        """Make a sent outbound message unsent again, so the relay publishes the same bytes once more, count the
        re-send in its row and append ``event``, in ONE transaction; False (nothing changed) if it is not a
        sent outbound message, or — with ``sent_before`` — was sent again since (another worker re-sent it)."""

    def unanswered_messages(self, sent_before: datetime.datetime, *, max_resends: int | None = None,
                            limit: int = 100) -> list[UnansweredMessage]:
        """Outbound messages sent before ``sent_before`` that still have at least one line pending or accepted,
        oldest send first; with ``max_resends``, only those re-sent fewer times than that."""

    def bank_message(self, direction: str, message_id: str) -> BankMessageRecord | None:
        """One stored bank message."""

    def bank_messages(self, direction: str, *, after: str | None = None, limit: int = 100) -> list[BankMessageRecord]:
        """Stored messages of one direction ordered by id, after ``after``."""

    def sent_message(self, message_id: str) -> SentMessage | None:
        """The stored outbound message ``message_id`` (sent or not yet marked) with its blocks' line counts and
        sums, without its bytes; None when no outbound message has that id."""

    def payments_by_ids(self, end_to_end_ids: list[str]) -> dict[str, PaymentRow]:
        """The stored lines among ``end_to_end_ids`` (unknown ids are simply absent)."""

    def payments_of_message(self, message_id: str, payment_info_id: str | None = None) -> list[PaymentRow]:
        """The lines a transfer message (or one of its payment groups) carried."""

    def payments_of(self, voucher_id: str, revision: int) -> list[PaymentRow]:
        """A revision's lines, by line number."""

    def payments_of_many(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], list[PaymentRow]]:
        """The lines of each (voucher id, revision) in ``keys`` that has any, by line number."""

    def line_states(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], list[LineStatus]]:
        """Where each line of each (voucher id, revision) in ``keys`` stands, by line number."""

    def record_report(self, write: ReportWrite) -> None:
        """Apply ``write`` in ONE transaction, or nothing: :class:`ReportAlreadyStored` for a repeat,
        :class:`LineChanged` when a line moved meanwhile."""

    def flag_unconfirmed(self, before: datetime.datetime, at: datetime.datetime) -> int:
        """Mark lines sent before ``before`` and still without a final answer; returns how many were newly marked."""

    def bank_totals(self) -> dict:
        """What reconciliation compares (gateway/reconciliation.py): sums by state, duplicates, budgets."""
