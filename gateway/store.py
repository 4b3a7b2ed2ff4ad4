"""The storage port: what the gateway keeps of every accepted voucher, and the audit log beside it.

Pure: the record types, the port (a Protocol the SQLite and PostgreSQL adapters both satisfy, checked by
one contract suite, ``tests/integration/test_store_contract.py``) and the pieces both adapters must agree
on byte for byte (timestamps, JSON, the paging cursor). No SQL here.

The records validate themselves on construction, so an adapter cannot store, nor hand back, a record
whose bytes do not match its digest or whose times are naive.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from gateway.errors import GatewayError, Refusal

if TYPE_CHECKING:
    from gateway.treasury.budget import Allotment, BudgetBalance, BudgetKey
    from gateway.trust.certificates import CertificateIdentity
    from gateway.vouchers.check import VerifiedVoucher
from gateway.vouchers.model import is_sha256_hex

GENESIS_HASH = "0" * 64
"""The prev_hash of audit entry 1: nothing comes before it."""

MAX_PAGE = 1000
"""The largest page a caller may ask for; bounds the memory one request can make the store use."""



def canonical_json(value: Any) -> str:
    """The one JSON spelling of ``value``: sorted keys, no spaces, no NaN. Hashes and stored columns use it
    so that what is hashed is exactly what is stored, whichever database holds it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _json_normalised(value: Any, what: str) -> Any:
    """``value`` as it will come back from storage (tuples become lists, int keys strings), or ValueError.
    Normalising up front makes a stored record equal to the one that was stored."""
    try:
        return json.loads(canonical_json(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serialisable: {exc}") from None


def utc(at: datetime.datetime, what: str) -> datetime.datetime:
    """``at`` in UTC; refuses naive times, which would be read differently by each database."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime")
    return at.astimezone(datetime.timezone.utc)


def utc_text(at: datetime.datetime) -> str:
    """Fixed-width ISO 8601 UTC (``2026-01-02T03:04:05.000006Z``): sorts as text in the order of time, so
    SQLite can keep it in a TEXT column and the hash chain reads the same from both databases."""
    return utc(at, "time").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_UTC_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def parse_utc_text(text: str) -> datetime.datetime:
    """The time :func:`utc_text` wrote, or ValueError for any other spelling. ``fromisoformat`` after a
    fixed-width check rather than ``strptime``: the same strictness at a twentieth of the cost, which
    matters when a bank report reads back tens of thousands of payment lines."""
    if not isinstance(text, str) or _UTC_TEXT.fullmatch(text) is None:
        raise ValueError(f"not a stored UTC time: {text!r}")
    return datetime.datetime.fromisoformat(text)


def _check_hex64(value: str | None, what: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not is_sha256_hex(value):
        raise ValueError(f"{what} must be 64 lowercase hex digits, not {value!r}")


@dataclass(frozen=True)
class IntakeRecord:
    """One accepted revision of one voucher: the exact bytes received and what the gateway answered.

    ``summary`` holds the values queries need without re-parsing the XML (see :func:`summary_of`).
    """

    voucher_id: str
    revision: int
    agency: str
    received_sha256: str
    received_bytes: bytes = field(repr=False)
    received_at: datetime.datetime
    status: str
    receipt_id: str
    receipt_xml: bytes = field(repr=False)
    summary: dict = field(default_factory=dict)
    chain_sha256: str | None = None
    """The last signed document of this revision's approval chain (the voucher itself until the first
    action): what the next action must name. None on construction means the received bytes."""
    status_at: datetime.datetime | None = None
    """When the revision entered its current status: queues list oldest first by it. None means received_at."""
    due_on: datetime.date | None = None
    """The Taipei date by which the voucher must be handled (gateway/workflow/working_days.py); None: no deadline known."""

    def __post_init__(self) -> None:
        if self.chain_sha256 is None:
            object.__setattr__(self, "chain_sha256", self.received_sha256)
        if self.status_at is None:
            object.__setattr__(self, "status_at", self.received_at)
        _check_hex64(self.chain_sha256, "chain_sha256")
        object.__setattr__(self, "status_at", utc(self.status_at, "status_at"))
        if self.due_on is not None and (not isinstance(self.due_on, datetime.date)
                                        or isinstance(self.due_on, datetime.datetime)):
            raise ValueError(f"due_on must be a date, not {self.due_on!r}")
        if not self.voucher_id or not self.agency or not self.status or not self.receipt_id:
            raise ValueError("voucher_id, agency, status and receipt_id must not be empty")
        if not isinstance(self.revision, int) or isinstance(self.revision, bool) or self.revision < 0:
            raise ValueError(f"revision must be a non-negative int, not {self.revision!r}")
        _check_hex64(self.received_sha256, "received_sha256")
        if not isinstance(self.received_bytes, bytes) or not isinstance(self.receipt_xml, bytes):
            raise ValueError("received_bytes and receipt_xml must be bytes")
        if not isinstance(self.summary, dict):
            raise ValueError("summary must be a dict")
        object.__setattr__(self, "received_at", utc(self.received_at, "received_at"))
        object.__setattr__(self, "summary", _json_normalised(self.summary, "summary"))

    @property
    def subject(self) -> str:
        """How the audit log names this revision."""
        return f"{self.voucher_id}#{self.revision}"


class VoucherHead(NamedTuple):
    """What a system step needs of a stored revision to decide and compare-and-set it: its status, chain head
    and summary, without the voucher's bytes (a bank report settles hundreds of vouchers at once)."""

    voucher_id: str
    revision: int
    agency: str
    status: str
    chain_sha256: str
    summary: dict

    @property
    def subject(self) -> str:
        return f"{self.voucher_id}#{self.revision}"


@dataclass(frozen=True)
class AuditEvent:
    """One state change to record: who (``actor``), did what (``action``) to what (``subject``), when, and
    the digest of the document it concerned. ``detail`` is free JSON for the rest."""

    at: datetime.datetime
    actor: str
    action: str
    subject: str
    document_sha256: str | None = None
    detail: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.actor or not self.action or not self.subject:
            raise ValueError("actor, action and subject must not be empty")
        _check_hex64(self.document_sha256, "document_sha256", optional=True)
        if not isinstance(self.detail, dict):
            raise ValueError("detail must be a dict")
        object.__setattr__(self, "at", utc(self.at, "at"))
        object.__setattr__(self, "detail", _json_normalised(self.detail, "detail"))


@dataclass(frozen=True)
class AuditEntry:
    """An audit event as stored: its place in the chain and the hashes that bind it there."""

    seq: int
    event: AuditEvent
    prev_hash: str
    hash: str


class StoreError(GatewayError):
    """The store could not do what was asked for a reason other than the caller's input."""


class UnreadableAuditEntry(StoreError):
    """A stored audit row cannot even be read back as an entry (bad JSON, bad time, bad digest): tampering
    or corruption at ``seq``. Entries before it were readable."""

    def __init__(self, seq: int, why: str) -> None:
        super().__init__(f"audit entry {seq} is unreadable: {why}")
        self.seq = seq
        self.why = why


class AlreadyStored(GatewayError):
    """(voucher_id, revision) is already stored; nothing was changed. ``existing`` is what is stored, so the
    caller can answer a repeat with the original receipt or a conflict when the bytes differ."""

    def __init__(self, existing: IntakeRecord) -> None:
        super().__init__(f"{existing.voucher_id} revision {existing.revision} is already stored")
        self.existing = existing


@dataclass(frozen=True)
class ActionRecord:
    """One signed action as received and decided: the exact bytes, who signed, and the receipt answered."""

    voucher_id: str
    revision: int
    stage: str
    agency: str
    decision: str
    action_sha256: str
    action_bytes: bytes = field(repr=False)
    signed_at: datetime.datetime
    received_at: datetime.datetime
    person: str
    key_sha256: str
    certificate: str
    grant_kind: str
    receipt_id: str
    receipt_xml: bytes = field(repr=False)
    status_after: str
    reason_code: str | None = None
    reason_text: str | None = None

    def __post_init__(self) -> None:
        for name in ("voucher_id", "stage", "agency", "decision", "person", "certificate", "grant_kind",
                     "receipt_id", "status_after"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        _check_hex64(self.action_sha256, "action_sha256")
        _check_hex64(self.key_sha256, "key_sha256")
        if hashlib.sha256(self.action_bytes).hexdigest() != self.action_sha256:
            raise ValueError("action_sha256 does not match the action bytes")
        object.__setattr__(self, "signed_at", utc(self.signed_at, "signed_at"))
        object.__setattr__(self, "received_at", utc(self.received_at, "received_at"))

    @property
    def subject(self) -> str:
        return f"{self.voucher_id}#{self.revision}"


@dataclass(frozen=True)
class StatusChange:
    """Move one revision from ``expected_status`` (with chain head ``expected_chain``) to ``new_status``.
    The store applies it only if both still hold, so two processes deciding on the same state cannot both
    win: the loser gets :class:`StatusChanged` and decides again on what is stored now."""

    voucher_id: str
    revision: int
    expected_status: str
    expected_chain: str
    new_status: str
    new_chain: str
    at: datetime.datetime

    def __post_init__(self) -> None:
        _check_hex64(self.expected_chain, "expected_chain")
        _check_hex64(self.new_chain, "new_chain")
        object.__setattr__(self, "at", utc(self.at, "at"))


BUDGET_OPS = ("reserve", "consume", "free")


@dataclass(frozen=True)
class BudgetOp:
    """Move one voucher revision's money on its allotment: ``reserve`` takes ``amount`` from what remains
    (refused with :class:`BudgetChanged` if it no longer does), ``consume`` turns the reservation into
    spending (paid), ``free`` gives a reservation or a spending back (rejected, returned)."""

    kind: str
    voucher_id: str
    revision: int
    agency: str
    fiscal_year: int
    budget_subject: str
    amount: int

    def __post_init__(self) -> None:
        if self.kind not in BUDGET_OPS:
            raise ValueError(f"unknown budget operation {self.kind!r}")
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount <= 0:
            raise ValueError(f"a budget amount is a positive whole NT$ amount, not {self.amount!r}")


@dataclass(frozen=True)
class PayeeEntry:
    """One released payment line in the duplicate-payment guard's index (see gateway/treasury/checks.py)."""

    voucher_id: str
    revision: int
    line_number: int
    payee_key: str

    def __post_init__(self) -> None:
        _check_hex64(self.payee_key, "payee_key")


@dataclass(frozen=True)
class WorkflowWrite:
    """Everything one workflow step writes, in ONE transaction: status changes, audit events, for a signed
    action the action itself, and the step's budget operations and payee index entries."""

    changes: tuple[StatusChange, ...]
    events: tuple[AuditEvent, ...]
    action: ActionRecord | None = None
    budget: tuple[BudgetOp, ...] = ()
    payees: tuple[PayeeEntry, ...] = ()

    def __post_init__(self) -> None:
        if not self.changes or not self.events:
            raise ValueError("a workflow write changes at least one status and records at least one event")
        if self.action is not None and not any(e.document_sha256 == self.action.action_sha256 for e in self.events):
            raise ValueError("an action's audit event must carry the action's SHA-256")


class BudgetChanged(GatewayError):
    """A reservation no longer fits what remains of its allotment (another release took it meanwhile);
    nothing was written. Read the balance again and decide again."""


class StatusChanged(GatewayError):
    """The revision's status or chain moved since it was read; nothing was written. Decide again."""


class ActionAlreadyStored(GatewayError):
    """An action for this (voucher, revision, stage) is stored already; nothing was written. ``existing``
    lets the caller answer a repeat with the original receipt, or other bytes with a conflict."""

    def __init__(self, existing: ActionRecord) -> None:
        super().__init__(f"the {existing.stage} action on {existing.subject} is already stored")
        self.existing = existing


class VoucherStore(Protocol):
    """Durable storage of accepted vouchers and the hash-chained audit log.

    Every method is safe to call from several threads at once, and several processes may share one store
    (PostgreSQL; SQLite on one host). Audit entries are appended in one total order: seq 1, 2, 3, … each
    with the previous entry's hash, never two entries with the same predecessor.
    """

    def record_intake(self, record: IntakeRecord, event: AuditEvent,
                      also: WorkflowWrite | None = None) -> IntakeRecord:
        """Store ``record`` and append ``event`` to the audit log in ONE transaction; return the record.

        Raises :class:`AlreadyStored` (changing nothing) when (voucher_id, revision) is already stored.
        ``event.document_sha256`` must be the record's ``received_sha256`` (ValueError otherwise).
        ``also`` is written in the same transaction (a correction supersedes the rejected revision), with
        :class:`StatusChanged` if it no longer applies.
        """

    def apply_workflow(self, write: WorkflowWrite) -> None:
        """Apply ``write`` in ONE transaction, or nothing: :class:`StatusChanged` if a change's expected
        status or chain no longer holds, :class:`ActionAlreadyStored` if its action's stage is taken."""

    def actions(self, voucher_id: str, revision: int) -> list[ActionRecord]:
        """The actions stored for that revision, in the order they were applied."""

    def queue(self, status: str, *, agency: str | None = None, limit: int = 100,
              after: tuple[datetime.datetime, str, int] | None = None) -> list[IntakeRecord]:
        """Revisions in ``status`` (of ``agency``, or of every agency), oldest ``status_at`` first; with ``after``
        (status_at, voucher_id, revision), only those after that position (paging through a long queue)."""

    def history(self, subject: str) -> list[AuditEntry]:
        """The audit entries about ``subject`` (``voucher_id#revision``), in seq order."""

    def queue_counts(self, statuses: list[str], *, overdue_before: datetime.date) -> dict[str, tuple[int, int]]:
        """Per status: (revisions in it, those with a due date before ``overdue_before``), across agencies."""

    def load_allotments(self, allotments: list[Allotment], event: AuditEvent) -> None:
        """Set these allotments (insert or change) and append ``event``, in ONE transaction. Refuses the
        whole file (``budget-allotment-too-low``, every such line listed) if any allotment would fall below
        what its key has reserved plus consumed. Keys not listed keep their allotment."""

    def budget_balance(self, key: BudgetKey) -> BudgetBalance | None:
        """Where ``key``'s allotment stands, or None without one."""

    def budget_balances(self, agency: str | None = None) -> list[tuple[BudgetKey, BudgetBalance]]:
        """Every allotment (of ``agency``), ordered by key."""

    def earlier_payments(self, payee_keys: list[str], *, since: datetime.datetime,
                         exclude_voucher: str, exclude_revision: int | None = None
                         ) -> list[tuple[str, str, int, int, str]]:
        """(payee key, voucher id, revision, line number, status) of indexed lines with one of ``payee_keys``,
        indexed at or after ``since``, whatever their status, except those of ``exclude_voucher`` (only its
        ``exclude_revision`` when given: a re-remitting revision must see what its predecessor paid) and
        except lines the bank returned (退匯: not a payment)."""

    def heads(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], VoucherHead]:
        """The status, chain head and summary of each stored (voucher id, revision) in ``keys``."""

    def get(self, voucher_id: str, revision: int | None = None) -> IntakeRecord | None:
        """That revision, or the highest stored revision when ``revision`` is None; None if not stored."""

    def revisions(self, voucher_id: str) -> list[IntakeRecord]:
        """Every stored revision of ``voucher_id``, lowest first."""

    def list_for_agency(self, agency: str | None, *, status: str | None = None,
                        received_from: datetime.datetime | None = None,
                        received_to: datetime.datetime | None = None, after: str | None = None,
                        limit: int = 100) -> tuple[list[IntakeRecord], str | None]:
        """One page of ``agency``'s records (every agency's when None: the treasury's console), ordered by
        (received_at, voucher_id, revision).

        ``received_from`` is inclusive, ``received_to`` exclusive. ``after`` is the cursor a previous page
        returned; the second item is the cursor of the next page, or None after the last. A malformed
        cursor is a :class:`Refusal` (``cursor-invalid``); ``limit`` must be 1..MAX_PAGE.
        """

    def append_audit(self, event: AuditEvent) -> AuditEntry:
        """Append ``event`` to the audit log in its own transaction; return the stored entry."""

    def audit_entries(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        """Up to ``limit`` entries with seq > ``after_seq``, in seq order."""

    def event_cursor(self, name: str) -> int:
        """The audit seq up to which the outbox reader ``name`` has handled entries (0: none yet). The event
        publisher (``adapters/amqp/event_publisher.py``) reads :meth:`audit_entries` after it."""

    def advance_event_cursor(self, name: str, expected: int, seq: int) -> bool:
        """Move ``name``'s cursor from ``expected`` to ``seq`` in one compare-and-set; False, changing nothing,
        when it no longer stands at ``expected`` (another reader moved it). A reader never seen stands at 0.
        ``seq`` must be above ``expected`` (ValueError): a cursor never goes back."""

    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""


# --- what both adapters share: paging cursor, page limits, intake summary --------------------------------


def encode_cursor(record: IntakeRecord) -> str:
    """An opaque cursor pointing just past ``record`` in (received_at, voucher_id, revision) order."""
    raw = canonical_json([utc_text(record.received_at), record.voucher_id, record.revision])
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime.datetime, str, int]:
    """The position a cursor names, or :class:`Refusal` ``cursor-invalid`` (it comes from a client)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, voucher_id, revision = json.loads(raw.decode("utf-8"))
        if not isinstance(voucher_id, str) or not isinstance(revision, int) or isinstance(revision, bool):
            raise ValueError("wrong field types")
        return parse_utc_text(at), voucher_id, revision
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise Refusal("cursor-invalid", "the paging cursor is not one this gateway issued") from None


def check_intake_pair(record: IntakeRecord, event: AuditEvent) -> None:
    """What every store checks before writing an intake (a caller's bug otherwise): the digest names exactly
    the bytes stored, and the audit entry names that digest. Checked on write only, where it guards what
    goes in; records read back are not re-hashed (a submission reads every prior revision of its voucher)."""
    if hashlib.sha256(record.received_bytes).hexdigest() != record.received_sha256:
        raise ValueError(f"received_sha256 does not match the received bytes of {record.voucher_id}")
    if event.document_sha256 != record.received_sha256:
        raise ValueError("the intake's audit event must carry the record's received_sha256")


def check_cursor_move(name: str, expected: int, seq: int) -> None:
    """What every store checks before moving an event cursor: a name, whole seqs, and forward only."""
    if not name or not isinstance(name, str):
        raise ValueError("an event cursor needs a name")
    for value, what in ((expected, "expected"), (seq, "seq")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{what} must be a non-negative int, not {value!r}")
    if seq <= expected:
        raise ValueError(f"an event cursor only moves forward ({expected} -> {seq})")


def check_limit(limit: int) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise Refusal("limit-invalid", f"the page size must be between 1 and {MAX_PAGE}")


def actor_of(identity: CertificateIdentity) -> str:
    """How the audit log names a certificate holder: issuer and serial identify a certificate for good."""
    return f"cert:{identity.issuer}#{identity.serial_hex}"


def summary_of(verified: VerifiedVoucher) -> dict:
    """The summary an :class:`IntakeRecord` keeps of a verified voucher (JSON, amounts in whole NT$)."""
    v = verified.voucher
    ident = verified.signer.identity
    corrects = None
    if v.corrects is not None:
        corrects = {"voucher_id": v.corrects.voucher_id, "revision": v.corrects.revision}
    return {
        "control_total": v.total_amount,
        "line_count": v.line_count,
        "amounts": [line.amount for line in v.lines],
        "signer": {"serial": ident.serial_hex, "issuer": ident.issuer, "role": verified.signer.role.value,
                   "person": verified.signer.grant.person, "key_sha256": ident.key_sha256,
                   "grant": verified.signer.grant.kind.value, "signed_at": utc_text(verified.signing_time)},
        "urgency": v.urgency.value,
        "budget": {"fiscal_year": v.fiscal_year, "subject": v.budget_subject},
        "corrects": corrects,
    }


def received_intake(verified: VerifiedVoucher, *, body: bytes, agency: str, at: datetime.datetime,
                    receipt_id: str, receipt_xml: bytes, detail: dict | None = None,
                    due_on: datetime.date | None = None) -> tuple[IntakeRecord, AuditEvent]:
    """The record and audit event that store one accepted voucher revision (see ``record_intake``)."""
    voucher = verified.voucher
    record = IntakeRecord(voucher_id=voucher.voucher_id, revision=voucher.revision, agency=agency,
                          received_sha256=verified.received_sha256, received_bytes=bytes(body), received_at=at,
                          status="received", receipt_id=receipt_id, receipt_xml=receipt_xml,
                          summary=summary_of(verified), due_on=due_on)
    event = AuditEvent(at=at, actor=actor_of(verified.signer.identity), action="voucher.received",
                       subject=record.subject, document_sha256=verified.received_sha256,
                       detail={"receipt_id": receipt_id, "grant": verified.signer.grant.kind.value,
                               "role": verified.signer.role.value, "status": record.status, **(detail or {})})
    return record, event
