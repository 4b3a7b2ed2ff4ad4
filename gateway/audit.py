"""The audit log's hash chain: how an entry's hash is made, and how a chain is checked.

Each entry's hash covers its seq, its event and the previous entry's hash, so changing, removing or
reordering any stored entry breaks the link at that entry or the next. (Removing the newest entries leaves
a shorter valid chain; operators catch that by keeping the head hash ``vgw audit verify`` prints
somewhere else, see docs/operations.md.)

Pure: the stores compute hashes with :func:`entry_hash` when they append, and ``vgw audit verify`` feeds
the stored entries, page by page, to a :class:`ChainVerifier`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.store import GENESIS_HASH, AuditEntry, AuditEvent, canonical_json, utc_text


def entry_hash(prev_hash: str, seq: int, event: AuditEvent) -> str:
    """SHA-256 (hex) of the canonical JSON of seq, the event's fields and ``prev_hash``."""
    document = {
        "seq": seq,
        "at": utc_text(event.at),
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject,
        "document_sha256": event.document_sha256,
        "detail": event.detail,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


def next_entry(head_seq: int, head_hash: str, event: AuditEvent) -> AuditEntry:
    """The entry that appends ``event`` after the chain's head (seq 0 and GENESIS_HASH: an empty chain).

    The head is taken as stored: a tampered entry is for ``vgw audit verify`` to find, not a reason to
    stop recording what happens after it.
    """
    seq = head_seq + 1
    return AuditEntry(seq, event, head_hash, entry_hash(head_hash, seq, event))


@dataclass(frozen=True)
class ChainReport:
    """The result of a check: ``ok``, how many entries were checked, and the first broken link if any."""

    ok: bool
    checked: int
    head_seq: int  # seq of the last entry that checked out (0: none)
    head_hash: str  # its hash (GENESIS_HASH: none)
    broken_seq: int | None = None
    reason: str | None = None  # "gap in seq" | "prev mismatch" | "hash mismatch", with particulars


class ChainVerifier:
    """Checks a chain fed in order, in as many pieces as convenient, stopping at the first broken link.

    Kept incremental so a verifier of millions of entries holds one page in memory, not the whole log.
    """

    def __init__(self) -> None:
        self._seq = 0
        self._hash = GENESIS_HASH
        self._checked = 0
        self._broken: tuple[int, str] | None = None

    def feed(self, entries: Iterable[AuditEntry]) -> bool:
        """Check ``entries``, which follow those fed before; False once a link is broken (feed no more)."""
        for entry in entries:
            if self._broken is not None:
                return False
            self._check(entry)
        return self._broken is None

    def _check(self, entry: AuditEntry) -> None:
        expected = self._seq + 1
        if entry.seq != expected:
            # Reported at the seq that should have come: that is where the chain stops holding.
            self._broken = (expected, f"gap in seq: expected {expected}, found {entry.seq}")
            return
        self._checked += 1
        if entry.prev_hash != self._hash:
            self._broken = (entry.seq, "prev mismatch: prev_hash is not the hash of the entry before")
            return
        if entry_hash(entry.prev_hash, entry.seq, entry.event) != entry.hash:
            self._broken = (entry.seq, "hash mismatch: the entry's content does not match its hash")
            return
        self._seq, self._hash = entry.seq, entry.hash

    def report(self) -> ChainReport:
        if self._broken is None:
            return ChainReport(True, self._checked, self._seq, self._hash)
        seq, reason = self._broken
        return ChainReport(False, self._checked, self._seq, self._hash, seq, reason)


def verify_chain(entries: Iterable[AuditEntry]) -> ChainReport:
    """Check a whole chain from seq 1."""
    verifier = ChainVerifier()
    verifier.feed(entries)
    return verifier.report()
