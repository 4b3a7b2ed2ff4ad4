"""The intake decision, row by row of its table, and as properties over any stored history."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.intake.decision import (
    CORRECTION_RULES,
    Accept,
    Conflict,
    Duplicate,
    PriorRevision,
    RevisionNotAccepted,
    Submission,
    decide_intake,
)
from gateway.trust.roles import Role
from gateway.vouchers.check import TAIPEI, check_signed_voucher
from gateway.vouchers.model import VoucherRef
from tests.conftest import AGENCY_A, NOW

VOUCHER = VoucherRef(AGENCY_A, 115, "0001000001", 1)
VOUCHER_ID = VOUCHER.voucher_id
OTHER = VoucherRef(AGENCY_A, 115, "0001000002", 1)


def sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def prior(revision: int, *, rejected: bool, content: str | None = None) -> PriorRevision:
    content = content or f"rev{revision}"
    return PriorRevision(revision, sha(content), rejected, receipt=f"<receipt of {content}/>".encode())


def submit(revision: int, content: str | None = None, corrects: int | VoucherRef | None = None) -> Submission:
    if isinstance(corrects, int):
        corrects = VoucherRef(VOUCHER.agency_code, VOUCHER.fiscal_year, VOUCHER.voucher_number, corrects)
    return Submission(VOUCHER_ID, revision, sha(content or f"rev{revision}"), corrects)


def not_accepted(decision) -> str:
    """The message of a RevisionNotAccepted, after checking its code and HTTP status."""
    assert isinstance(decision, RevisionNotAccepted), decision
    refusal = decision.refusal
    assert refusal.code == "revision-not-accepted" and refusal.http_status == 409
    return refusal.message


# --- the table, row by row ---------------------------------------------------------------------------------------

def test_same_revision_same_bytes_is_a_duplicate_with_the_original_receipt() -> None:
    stored = prior(1, rejected=False)
    assert decide_intake(submit(1), [stored]) == Duplicate(stored.receipt)


def test_same_revision_other_bytes_is_a_conflict() -> None:
    decision = decide_intake(submit(1, content="changed"), [prior(1, rejected=False)])
    assert isinstance(decision, Conflict)
    refusal = decision.refusal
    assert refusal.code == "duplicate-conflict" and refusal.http_status == 409
    assert sha("rev1") in refusal.message and refusal.problems[0].path == "/Voucher/Header/Revision"


def test_same_revision_other_bytes_conflicts_even_when_that_revision_was_rejected() -> None:
    """A rejected revision is corrected by a NEW revision, never by replacing the rejected one's bytes."""
    assert isinstance(decide_intake(submit(1, content="changed"), [prior(1, rejected=True)]), Conflict)


def test_first_revision_of_an_unknown_voucher_is_accepted() -> None:
    assert decide_intake(submit(1), []) == Accept(correction_of=None)


def test_later_revision_of_an_unknown_voucher_is_not_accepted() -> None:
    message = not_accepted(decide_intake(submit(3, corrects=2), []))
    assert "no revision" in message and "revision 1 first" in message


def test_next_revision_correcting_the_rejected_latest_is_accepted() -> None:
    assert decide_intake(submit(2, corrects=1), [prior(1, rejected=True)]) == Accept(correction_of=1)


def test_correction_of_the_latest_of_several_rejected_revisions_is_accepted() -> None:
    history = [prior(2, rejected=True), prior(1, rejected=True)]  # order does not matter
    assert decide_intake(submit(3, corrects=2), history) == Accept(correction_of=2)


def test_next_revision_of_a_voucher_the_bank_returned_re_remits_it_without_superseding() -> None:
    """退匯: the returned revision stays final (its paid lines were paid); the next revision pays again."""
    returned = PriorRevision(1, sha("r1"), rejected=False, receipt=b"<r1/>", returned=True)
    assert decide_intake(submit(2, corrects=1), [returned]) == Accept(re_remits=1)
    assert "(the one it corrects) in Corrects" in not_accepted(decide_intake(submit(2), [returned]))


def test_new_revision_while_the_latest_is_not_rejected_is_not_accepted() -> None:
    message = not_accepted(decide_intake(submit(2, corrects=1), [prior(1, rejected=False)]))
    assert "revision 1 has not been sent back (退件)" in message


def test_new_revision_while_an_earlier_was_rejected_but_the_latest_is_open_is_not_accepted() -> None:
    history = [prior(1, rejected=True), prior(2, rejected=False)]
    assert "revision 2 has not been sent back" in not_accepted(decide_intake(submit(3, corrects=2), history))


@pytest.mark.parametrize("revision", [3, 7])
def test_skipping_a_revision_is_not_accepted(revision) -> None:
    message = not_accepted(decide_intake(submit(revision, corrects=1), [prior(1, rejected=True)]))
    assert f"revision {revision} is not the next revision" in message and "must be revision 2" in message


@pytest.mark.parametrize("corrects", [None, 3, OTHER], ids=["none", "itself", "another-voucher"])
def test_correction_not_naming_the_rejected_latest_is_not_accepted(corrects) -> None:
    decision = decide_intake(submit(3, corrects=corrects), [prior(1, rejected=True), prior(2, rejected=True)])
    message = not_accepted(decision)
    assert "must name revision 2" in message
    assert decision.problem.path == "/Voucher/Header/Corrects"


def test_correction_naming_an_older_rejected_revision_is_not_accepted() -> None:
    history = [prior(1, rejected=True), prior(2, rejected=True)]
    assert "must name revision 2" in not_accepted(decide_intake(submit(3, corrects=1), history))


def test_correction_rules_are_checked_in_table_order() -> None:
    """Everything wrong at once: the answer is the first row's (the revision number)."""
    assert len(CORRECTION_RULES) == 3
    message = not_accepted(decide_intake(submit(5), [prior(1, rejected=False)]))
    assert "not the next revision" in message


def test_a_history_with_a_revision_twice_is_a_store_bug_not_a_refusal() -> None:
    with pytest.raises(ValueError, match="more than once"):
        decide_intake(submit(2, corrects=1), [prior(1, rejected=True), prior(1, rejected=True, content="x")])


@pytest.mark.parametrize("make", [
    lambda: Submission(VOUCHER_ID, 0, sha("x")),
    lambda: Submission(VOUCHER_ID, True, sha("x")),
    lambda: Submission(VOUCHER_ID, 1, sha("x").upper()),
    lambda: PriorRevision(1000, sha("x"), False, b""),
    lambda: PriorRevision(1, "abc", False, b""),
])
def test_inputs_check_their_own_fields(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_submission_is_read_from_a_verified_voucher(pki, banks, factory, sign_voucher) -> None:
    original = factory.voucher(AGENCY_A, today=NOW.astimezone(TAIPEI).date(), lines=1)
    correction = factory.correction(original)
    data = sign_voucher(correction)
    verified = check_signed_voucher(data, platform=pki.platform(), banks=banks, role=Role.PREPARER, now=NOW)
    assert Submission.of(verified) == Submission(correction.voucher_id, 2, hashlib.sha256(data).hexdigest(),
                                                 original.ref)


# --- properties over any history ---------------------------------------------------------------------------------

@st.composite
def histories(draw) -> list[PriorRevision]:
    """Revisions 1..n of one voucher (any n up to 8), in any order, with distinct contents and any statuses."""
    n = draw(st.integers(1, 8))
    contents = draw(st.lists(st.binary(min_size=1, max_size=16), min_size=n, max_size=n, unique=True))
    rejected = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    receipts = draw(st.lists(st.binary(max_size=32), min_size=n, max_size=n))
    stored = [PriorRevision(i + 1, hashlib.sha256(contents[i]).hexdigest(), rejected[i], receipts[i])
              for i in range(n)]
    return draw(st.permutations(stored))


corrects_refs = st.one_of(st.none(), st.integers(1, 10).map(lambda r: VoucherRef(
    VOUCHER.agency_code, VOUCHER.fiscal_year, VOUCHER.voucher_number, r)), st.just(OTHER))


@settings(max_examples=300, deadline=None)
@given(history=histories(), data=st.data())
def test_resubmitting_any_stored_revision_returns_its_original_receipt(history, data) -> None:
    stored = data.draw(st.sampled_from(history))
    corrects = data.draw(corrects_refs)  # whatever else it says, the same bytes are the same submission
    decision = decide_intake(Submission(VOUCHER_ID, stored.revision, stored.received_sha256, corrects), history)
    assert decision == Duplicate(stored.receipt)


@settings(max_examples=300, deadline=None)
@given(history=histories(), revision=st.integers(1, 12), content=st.binary(min_size=17, max_size=32),
       corrects=corrects_refs)
def test_new_bytes_are_accepted_only_as_the_correction_of_the_rejected_latest(history, revision, content,
                                                                              corrects) -> None:
    """Content longer than any stored one is new bytes; the decision agrees with the rules stated plainly."""
    submission = Submission(VOUCHER_ID, revision, hashlib.sha256(content).hexdigest(), corrects)
    decision = decide_intake(submission, history)
    latest = max(history, key=lambda p: p.revision)
    if revision <= latest.revision:
        assert isinstance(decision, Conflict)
    elif (revision == latest.revision + 1 and latest.rejected and corrects is not None
          and corrects.voucher_id == VOUCHER_ID and corrects.revision == latest.revision):
        assert decision == Accept(correction_of=latest.revision)
    else:
        assert isinstance(decision, RevisionNotAccepted)


# --- replacing another voucher (revision 1 whose Corrects names another voucher id) ------------------------------

def test_a_new_voucher_may_replace_another_only_while_that_one_is_sent_back() -> None:
    replacing = submit(1, corrects=OTHER)
    assert decide_intake(replacing, [], replaced_status="rejected") == Accept(replaces=OTHER)
    assert "was never received" in not_accepted(decide_intake(replacing, [], replaced_status=None))
    for status in ("received", "released", "treasury-accepted", "paid", "superseded", "returned", "cancelled"):
        assert f"is {status}" in not_accepted(decide_intake(replacing, [], replaced_status=status))


def test_a_replacement_sent_again_is_a_duplicate_whatever_became_of_the_replaced_voucher() -> None:
    stored = prior(1, rejected=False)
    assert decide_intake(submit(1, corrects=OTHER), [stored], replaced_status="superseded") == Duplicate(stored.receipt)
