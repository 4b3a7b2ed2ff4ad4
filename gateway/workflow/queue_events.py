"""Queue events: which audit entries tell an agency's system that work arrived, and what the message says.

The audit log is the outbox. Every workflow status change is an audit entry written in the same transaction
as the change (subject ``VOUCHER_ID#REVISION``, ``detail["status"]`` the new status), so an entry that exists
describes a change that happened, and every change has one. :func:`event_of` maps one entry to the event
published for it (``adapters/amqp/event_publisher.py`` does the publishing), or to None when the entry concerns
nobody waiting.

What is published (docs/api.md "Queue events"):

- **queue events**, routing key ``queue.{agency}.{role}``: the revision entered the work queue of ``role``
  (:data:`gateway.workflow.transitions.QUEUE_OF`): received → reviewer, reviewed → accountant, accountant-approved →
  head, head-approved → releaser, rejected → preparer (退件: a correction is awaited), held → treasury. A
  held voucher waits for a treasury operator, so its event goes to the treasury's agency
  (:data:`gateway.trust.roles.TREASURY_AGENCY`), not to the voucher's.
- **status events**, routing key ``status.{agency}.{status}``: the treasury accepted the voucher
  (``treasury-accepted``), the bank paid it (``paid``) or sent the money back (``returned``, 退匯: the agency
  must re-remit). Nobody's queue, but what an agency would otherwise poll for.
- nothing for the rest: ``released`` (the treasury check follows at once and publishes its own outcome),
  ``batched`` (bookkeeping), ``superseded`` and ``cancelled`` (the agency's own doing; a correction's
  ``received`` is published), and entries that are not about a voucher revision (``budget.load``).

Pure: no I/O; the publisher adds the revision's due date, which lives in the intake row.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from gateway.store import AuditEntry, canonical_json, utc, utc_text
from gateway.trust.roles import TREASURY_AGENCY
from gateway.workflow.transitions import QUEUE_OF, Actor, Status

ROLE_AWAITED: dict[Status, Actor] = {status: actor for actor, status in QUEUE_OF.items()}
"""The queue a status puts a revision in: the inverse of QUEUE_OF."""

_WORD = re.compile(r"[A-Za-z0-9-]+")
"""What a routing-key word may hold here: no ``.`` (the separator), ``*`` or ``#`` (binding wildcards)."""

STATUS_EVENTS = frozenset({Status.TREASURY_ACCEPTED, Status.PAID, Status.RETURNED})
"""Statuses told to the voucher's agency although no queue holds them."""


@dataclass(frozen=True)
class QueueEvent:
    """One published event: audit entry ``event_id`` moved ``voucher_id#revision`` to ``status``."""

    event_id: int
    """The audit entry's seq: unique and increasing; the message id consumers deduplicate by."""
    agency: str
    """Whose system the event is for (the routing key's second word)."""
    voucher_id: str
    revision: int
    status: str
    role: str | None
    """The role whose queue the revision entered; None for a status event."""
    at: datetime.datetime
    due_on: datetime.date | None = None
    """The revision's due date (fixed at intake); None where none is known."""
    reason_code: str | None = None
    """Why it was sent back or held (a rejection's or hold's reason code), when it was."""

    def __post_init__(self) -> None:
        if not isinstance(self.event_id, int) or isinstance(self.event_id, bool) or self.event_id < 1:
            raise ValueError(f"event_id must be a positive int, not {self.event_id!r}")
        if not self.voucher_id:
            raise ValueError("voucher_id must not be empty")
        for name in ("agency", "status", "role"):
            value = getattr(self, name)
            if value is not None and not _WORD.fullmatch(value):
                raise ValueError(f"{name} must be one routing-key word (letters, digits, '-'), not {value!r}")
        if not isinstance(self.revision, int) or isinstance(self.revision, bool) or self.revision < 0:
            raise ValueError(f"revision must be a non-negative int, not {self.revision!r}")
        object.__setattr__(self, "at", utc(self.at, "at"))

    @property
    def routing_key(self) -> str:
        if self.role is not None:
            return f"queue.{self.agency}.{self.role}"
        return f"status.{self.agency}.{self.status}"

    def document(self) -> dict:
        """The JSON body's fields (``due_on`` and ``reason_code`` only when known)."""
        body = {"event_id": self.event_id, "agency": self.agency, "voucher_id": self.voucher_id,
                "revision": self.revision, "status": self.status, "role": self.role, "at": utc_text(self.at)}
        if self.due_on is not None:
            body["due_on"] = self.due_on.isoformat()
        if self.reason_code is not None:
            body["reason_code"] = self.reason_code
        return body

    def body(self) -> bytes:
        return canonical_json(self.document()).encode("utf-8")


def revision_of(subject: str) -> tuple[str, int] | None:
    """(voucher id, revision) from an audit subject ``VOUCHER_ID#REVISION``; None for other subjects."""
    voucher_id, hash_sign, revision = subject.rpartition("#")
    if not hash_sign or not voucher_id or not revision.isdigit() or not revision.isascii():
        return None
    return voucher_id, int(revision)


def agency_of(voucher_id: str) -> str:
    """The agency a voucher id belongs to: ``AGENCY-YEAR-NUMBER``."""
    return voucher_id.split("-", 1)[0]


def event_of(entry: AuditEntry) -> QueueEvent | None:
    """The event to publish for ``entry``, or None when it concerns nobody's queue (see the module docstring)."""
    about = revision_of(entry.event.subject)
    raw_status = entry.event.detail.get("status")
    if about is None or not isinstance(raw_status, str):
        return None
    try:
        status = Status(raw_status)
    except ValueError:
        return None
    voucher_id, revision = about
    awaited = ROLE_AWAITED.get(status)
    if awaited is None and status not in STATUS_EVENTS:
        return None
    agency = TREASURY_AGENCY if awaited is Actor.TREASURY else agency_of(voucher_id)
    reason = entry.event.detail.get("reason_code")
    return QueueEvent(event_id=entry.seq, agency=agency, voucher_id=voucher_id, revision=revision,
                      status=status.value, role=awaited.value if awaited is not None else None, at=entry.event.at,
                      reason_code=reason if isinstance(reason, str) and reason else None)
