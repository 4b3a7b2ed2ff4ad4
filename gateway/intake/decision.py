"""The intake decision: what to do with a verified voucher given what the store already holds for its id.

Pure and table-driven, so every case is visible in one place and tested row by row; the store adapter
reads the history inside the transaction that will store the voucher, calls :func:`decide_intake`, and
acts on the answer (issue 3):

=====================================================  ==================================================
the store holds, for this voucher id                   decision
=====================================================  ==================================================
this revision, with the same SHA-256                   :class:`Duplicate` — answer the ORIGINAL receipt
this revision, with another SHA-256                    :class:`Conflict` — ``duplicate-conflict`` (409)
nothing, and the revision is 1                         :class:`Accept`
nothing, and the revision is above 1                   :class:`RevisionNotAccepted`
other revisions: the next one (latest + 1), the        :class:`Accept` (``correction_of`` = latest)
latest was rejected (退件), and ``Corrects`` names it
the same, but the latest was returned by the bank      :class:`Accept` (``re_remits`` = latest): the new
(退匯): the correction re-remits its returned lines     revision pays again; the returned one stays final
other revisions, any of those three not so             :class:`RevisionNotAccepted`, saying which
nothing; revision 1 whose ``Corrects`` names ANOTHER   :class:`Accept` (``replaces`` = that revision) if that
voucher of the agency (re-issued under a new number   revision is the latest and was sent back (rejected):
after 退件)                                             it becomes superseded in the same transaction; else
                                                       :class:`RevisionNotAccepted`
=====================================================  ==================================================

Why these rules: a retry of the same bytes must be harmless (the agency cannot tell a lost answer from a
lost request, so it resends), while different bytes under a revision we already hold would silently
replace a signed payment order; and a voucher may only move on while the treasury has sent it back,
otherwise two live revisions of one payment could both be paid. The same holds for a replacement under a
new voucher number: it is accepted only while the voucher it replaces is sent back, which it supersedes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.errors import Problem, Refusal
from gateway.vouchers.check import VerifiedVoucher
from gateway.vouchers.model import VoucherRef, is_revision, is_sha256_hex


def _check_revision(revision: int) -> None:
    if not is_revision(revision):
        raise ValueError(f"a revision is an integer from 1 to 999, not {revision!r}")


def _check_sha256(value: str) -> None:
    if not is_sha256_hex(value):
        raise ValueError("a SHA-256 digest is 64 lowercase hex digits")


@dataclass(frozen=True)
class Submission:
    """The incoming voucher as intake needs it: all from the signed voucher and the received bytes."""

    voucher_id: str
    revision: int
    received_sha256: str
    corrects: VoucherRef | None = None

    def __post_init__(self) -> None:
        _check_revision(self.revision)
        _check_sha256(self.received_sha256)

    @classmethod
    def of(cls, verified: VerifiedVoucher) -> Submission:
        voucher = verified.voucher
        return cls(voucher.voucher_id, voucher.revision, verified.received_sha256, voucher.corrects)


@dataclass(frozen=True)
class PriorRevision:
    """One revision of the voucher already in the store.

    ``rejected`` rather than the workflow's full status: intake only asks whether the treasury sent this
    revision back (退件); the store maps its own states onto that one bit, so the workflow can grow
    states without touching intake.
    """

    revision: int
    received_sha256: str
    rejected: bool
    receipt: bytes
    """The signed receipt issued for it, byte for byte: what a duplicate submission gets back."""
    returned: bool = False
    """The bank returned some of its payments (退匯): the next revision re-remits them."""

    def __post_init__(self) -> None:
        _check_revision(self.revision)
        _check_sha256(self.received_sha256)


@dataclass(frozen=True)
class Accept:
    """Store the voucher and issue a new receipt (HTTP 202)."""

    correction_of: int | None = None
    """The rejected revision this one replaces, if it is a correction."""
    re_remits: int | None = None
    """The revision whose returned payments (退匯) this one pays again, corrected. That revision stays returned
    (its paid lines were paid, its returned ones are final); nothing is superseded."""
    replaces: VoucherRef | None = None
    """Another voucher's revision this new voucher replaces (revision 1 with a cross-voucher Corrects)."""


@dataclass(frozen=True)
class Duplicate:
    """The exact bytes were received before: answer the original receipt, change nothing (HTTP 200)."""

    original_receipt: bytes


@dataclass(frozen=True)
class _Refused:
    """A decision to refuse, carrying the problem to answer with."""

    problem: Problem

    @property
    def refusal(self) -> Refusal:
        return Refusal([self.problem])


@dataclass(frozen=True)
class Conflict(_Refused):
    """This revision is held with other bytes: refuse, change nothing (``duplicate-conflict``, HTTP 409)."""


@dataclass(frozen=True)
class RevisionNotAccepted(_Refused):
    """A revision the voucher's history does not allow now (``revision-not-accepted``, HTTP 409)."""


Decision = Accept | Duplicate | Conflict | RevisionNotAccepted

_CORRECTS_PATH = "/Voucher/Header/Corrects"
_REVISION_PATH = "/Voucher/Header/Revision"

# What a new revision must satisfy against the latest stored one, checked in this order; the first that
# fails is the answer. Each row: (holds?, message, path). Messages are formatted with s (the submission)
# and latest (the latest stored revision).
_CorrectionRule = tuple[Callable[[Submission, PriorRevision], bool], str, str]
CORRECTION_RULES: tuple[_CorrectionRule, ...] = (
    (lambda s, latest: s.revision == latest.revision + 1,
     "revision {s.revision} is not the next revision: the latest received is {latest.revision}, so a "
     "correction must be revision {next}",
     _REVISION_PATH),
    (lambda s, latest: latest.rejected or latest.returned,
     "revision {latest.revision} has not been sent back (退件) nor returned by the bank (退匯); a new revision "
     "is accepted only as the correction of one of those",
     _REVISION_PATH),
    (lambda s, latest: s.corrects is not None and s.corrects.voucher_id == s.voucher_id
     and s.corrects.revision == latest.revision,
     "a correction of {s.voucher_id} must name revision {latest.revision} (the one it corrects) in Corrects",
     _CORRECTS_PATH),
)


def _not_accepted(message: str, path: str) -> RevisionNotAccepted:
    return RevisionNotAccepted(Problem("revision-not-accepted", message, path=path))


REPLACEABLE = frozenset({"rejected"})
"""Statuses in which another voucher may replace a revision. Only rejected: superseding it in the same
transaction makes the replacement exclusive (a second one finds it superseded). A voucher returned by the
bank (退匯) is re-remitted through the bank-return flow; a cancelled one needs no link."""


def decide_intake(submission: Submission, history: Sequence[PriorRevision],
                  replaced_status: str | None = None) -> Decision:
    """Decide what to do with ``submission`` given ``history`` (every stored revision of its voucher id) and,
    for a revision 1 whose Corrects names another voucher, ``replaced_status`` (that revision's workflow
    status, None if it was never received).

    The history must be read in the same transaction that stores an accepted voucher, or two concurrent
    submissions could both be accepted; a unique key on (voucher id, revision) in the store backs this up.
    A history with a revision twice is a store bug and raises ValueError, not a Refusal.
    """
    by_revision = {prior.revision: prior for prior in history}
    if len(by_revision) != len(history):
        raise ValueError("the history holds a revision more than once")

    same = by_revision.get(submission.revision)
    if same is not None:
        if same.received_sha256 == submission.received_sha256:
            return Duplicate(same.receipt)
        return Conflict(Problem(
            "duplicate-conflict",
            f"revision {submission.revision} of {submission.voucher_id} was already received with other content "
            f"(SHA-256 {same.received_sha256}); send a correction as a new revision once it is sent back",
            path=_REVISION_PATH))

    if not by_revision:
        replaced = submission.corrects
        if submission.revision == 1 and replaced is not None and replaced.voucher_id != submission.voucher_id:
            if replaced_status is None:
                return _not_accepted(f"{replaced.voucher_id} revision {replaced.revision}, which this voucher says it "
                                     "replaces (Corrects), was never received", _CORRECTS_PATH)
            if replaced_status not in REPLACEABLE:
                return _not_accepted(f"{replaced.voucher_id} revision {replaced.revision} is {replaced_status}: a "
                                     "voucher replaces another only while that one is sent back (退件) awaiting "
                                     "correction", _CORRECTS_PATH)
            return Accept(replaces=replaced)
        if submission.revision == 1:
            return Accept()
        return _not_accepted(
            f"no revision of {submission.voucher_id} has been received, so revision {submission.revision} "
            "corrects nothing; send revision 1 first", _REVISION_PATH)

    latest = by_revision[max(by_revision)]
    for holds, message, path in CORRECTION_RULES:
        if not holds(submission, latest):
            return _not_accepted(message.format(s=submission, latest=latest, next=latest.revision + 1), path)
    if latest.returned:
        return Accept(re_remits=latest.revision)
    return Accept(correction_of=latest.revision)
