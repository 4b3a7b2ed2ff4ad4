"""The storage port of deposit notices: the rows as read back, and what the SQL stores do with them.

Pure: record types and the Protocol (adapters/storage/notices.py satisfies it for SQLite and PostgreSQL). The
two writes that create and arm a notice are not here: they happen inside the bank exchange's own
transactions (``record_batch`` writes the row, ``record_report`` books or cancels it), which is what makes
"one notice per booked line, and none for a line that came back" hold across crashes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Protocol

from gateway.notices.content import Channel, DepositNotice, NoticeState, Outcome
from gateway.store import AuditEvent


@dataclass(frozen=True)
class NoticeRow:
    """One notice as stored: where it goes, where it stands, and what happened last."""

    end_to_end_id: str
    voucher_id: str
    revision: int
    line_number: int
    agency: str
    channel: Channel
    address: str
    state: NoticeState
    attempts: int
    next_attempt_at: datetime.datetime | None
    last_error: str | None
    message_id: str | None
    booked_at: datetime.datetime | None
    sent_at: datetime.datetime | None
    changed_at: datetime.datetime


class NoticeStore(Protocol):
    """What the notice worker, the letters batch and the status page need. Safe from several processes."""

    def claim_notices(self, now: datetime.datetime, *, lease: datetime.timedelta, limit: int = 50,
                      channels: tuple[Channel, ...] = (Channel.EMAIL, Channel.FAX),
                      paid_until: datetime.date | None = None) -> list[DepositNotice]:
        """Take up to ``limit`` pending notices that are due at ``now`` and not leased by someone else: each
        gets a fresh claim token, ``lease_until = now + lease`` and one more attempt, in ONE transaction
        (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so two workers never take the same row)."""

    def note_message_ids(self, pairs: list[tuple[DepositNotice, str]]) -> None:
        """Keep each claimed notice's message id before it is delivered (a letter batch's file and page), so
        a crash after delivery and before :meth:`record_notice_outcome` can be recognised afterwards."""

    def record_notice_outcome(self, notice: DepositNotice, outcome: Outcome, *, message_id: str | None,
                              event: AuditEvent | None) -> bool:
        """Store ``outcome`` and release the lease, with ``event`` in the audit log in the same transaction;
        False, changing nothing, when the claim is no longer this one (the lease ran out and another worker
        took the notice)."""

    def notices_of(self, voucher_id: str, revision: int) -> list[NoticeRow]:
        """A revision's notices, by line number."""

    def notice_rows(self, *, state: NoticeState | None = None, after: str | None = None,
                    limit: int = 100) -> list[NoticeRow]:
        """Notices (in ``state``) ordered by EndToEndId, after ``after``."""

    def notice_counts(self) -> dict[tuple[str, str], int]:
        """How many notices per (channel, state)."""
