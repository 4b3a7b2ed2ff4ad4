"""A bank report bound to exactly what was sent (gateway/bank/binding.py), and the facts a report adds to a line
it does not move (gateway/bank/outcomes.py filled_facts), through the pure settlement (settle_report)."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bank.binding import ORIGINAL_MISMATCH, REFERENCE_UNKNOWN, line_problem, original_problems
from gateway.bank.outcomes import BOOKING_CONFLICT_CODE, FACT_RULES, LineFacts, filled_facts, row
from gateway.bank.payments import (
    BankOutcome,
    BankReport,
    LineState,
    OriginalBlock,
    OriginalMessage,
    OutcomeKind,
    end_to_end_id,
)
from gateway.bank.settlement import settle_report
from gateway.bank.store import BankMessageRecord, PaymentRow, SentMessage
from gateway.business_time import TAIPEI
from gateway.errors import Refusal
from gateway.problems import TITLES

L, K = LineState, OutcomeKind
NOW = datetime.datetime(2026, 12, 8, 10, 0, tzinfo=TAIPEI)
DAY, LATER = datetime.date(2026, 12, 8), datetime.date(2026, 12, 9)
A, B = "VGW20261208-aaaaaaaaaaaaaaaa", "VGW20261208-bbbbbbbbbbbbbbbb"
E1, E2, E3 = (end_to_end_id("379000001A", 115, "000777", 1, n) for n in (1, 2, 3))


def line(e2e: str = E1, *, message: str = A, block: str = A + "-01", state: LineState = L.PENDING,
         amount: int = 1500, booked_on=None, bank_reference=None, reason_code=None) -> PaymentRow:
    number = int(e2e[-4:])
    return PaymentRow(e2e, "379000001A-115-000777", 1, number, "379000001A", 115, "5102010000", amount, message, block,
                      state, reason_code, None, bank_reference, booked_on, NOW, NOW, None)


def sent(message: str = A, **blocks) -> SentMessage:
    blocks = blocks or {f"{message}-01": (2, 3000)}
    return SentMessage(message, "pain.001.001.09", sum(c for c, _ in blocks.values()),
                       sum(s for _, s in blocks.values()), NOW.replace(microsecond=250_000), blocks)


def record(report_id: str = "FB-P2-1") -> BankMessageRecord:
    body = report_id.encode()
    return BankMessageRecord("in", report_id, "pain.002.001.10", "reports", body, hashlib.sha256(body).hexdigest(),
                             1, 0, NOW)


def pain002(*outcomes: BankOutcome, original: OriginalMessage | None = None, report_id: str = "FB-P2-1"):
    return BankReport(report_id, "pain.002.001.10", NOW, outcomes, (),
                      original or OriginalMessage(A, "pain.001.001.09", blocks=(OriginalBlock(A + "-01"),)))


def camt054(*outcomes: BankOutcome, report_id: str = "FB-C5-1"):
    return BankReport(report_id, "camt.054.001.08", NOW, outcomes)


def status(e2e: str, kind: OutcomeKind = K.PAID, *, message: str = A, block: str = A + "-01", reference="FB01",
           amount=1500, **kwargs) -> BankOutcome:
    return BankOutcome(kind, message, block, e2e, amount, bank_reference=reference, **kwargs)


def booking(e2e: str, kind: OutcomeKind = K.PAID, *, on=DAY, reference="FB01-BK", message=None, block=None,
            **kwargs) -> BankOutcome:
    return BankOutcome(kind, message, block, e2e, 1500, bank_reference=reference, booked_on=on, **kwargs)


def test_the_new_codes_have_titles() -> None:
    assert {REFERENCE_UNKNOWN, ORIGINAL_MISMATCH, BOOKING_CONFLICT_CODE} <= set(TITLES)


# --- the message a pain.002 answers ------------------------------------------------------------------------------

def test_a_report_that_agrees_with_the_message_sent_is_bound() -> None:
    original = OriginalMessage(A, "pain.001.001.09", NOW.replace(microsecond=0), 2, 3000,
                               (OriginalBlock(A + "-01", 2, 3000),))
    assert original_problems(original, sent()) == []
    assert original_problems(None, None) == []  # a camt.054 names no original message


def test_a_report_about_a_message_never_sent_is_unknown() -> None:
    [problem] = original_problems(OriginalMessage(B, "pain.001.001.09"), None)
    assert (problem.code, problem.reference) == (REFERENCE_UNKNOWN, B)


@pytest.mark.parametrize("said", [
    {"message_name": "pain.001.001.03"},
    {"created_at": NOW + datetime.timedelta(seconds=1)},
    {"count": 3},
    {"control_sum": 3001},
])
def test_facts_of_the_original_message_that_disagree_are_a_mismatch(said) -> None:
    original = OriginalMessage(**{"message_id": A, "message_name": "pain.001.001.09", **said})
    [problem] = original_problems(original, sent())
    assert problem.code == ORIGINAL_MISMATCH and problem.reference == A


def test_a_block_not_in_the_message_is_unknown_and_a_blocks_own_counts_are_compared() -> None:
    original = OriginalMessage(A, "pain.001.001.09", blocks=(OriginalBlock(B + "-01"), OriginalBlock(A + "-01", 1)))
    problems = original_problems(original, sent())
    assert [(p.code, p.reference) for p in problems] == [(REFERENCE_UNKNOWN, B + "-01"), (ORIGINAL_MISMATCH, A)]


# --- each payment in its own message and block ---------------------------------------------------------------

@pytest.mark.parametrize("outcome, what", [
    (status(E1, message=B), "message"),
    (status(E1, block=A + "-02"), "payment block"),
    (status(E1, instruction_id=E2), "instruction id"),
    (booking(E1, message=B), "message"),
    (booking(E1, block=B + "-01"), "payment block"),
])
def test_a_payment_reported_under_another_message_block_or_instruction_is_unknown(outcome, what) -> None:
    problem = line_problem(outcome, line())
    assert problem.code == REFERENCE_UNKNOWN and problem.reference == E1 and what in problem.message


def test_a_payment_under_its_own_references_or_none_is_bound() -> None:
    assert line_problem(status(E1, instruction_id=E1), line()) is None
    assert line_problem(booking(E1), line()) is None  # a booking without Refs/MsgId binds by its EndToEndId
    assert line_problem(booking(E1, message=A, block=A + "-01"), line()) is None


def test_a_status_about_message_a_listing_a_payment_of_message_b_changes_nothing() -> None:
    """The hole the issue names: B's line would have been paid by a report about A."""
    theirs = line(E2, message=B, block=B + "-01")
    settlement = settle_report(pain002(status(E1), status(E2)), record(), targets=[[line()], [theirs]],
                               sent=sent(), at=NOW)
    assert [(u.code, u.reference) for u in settlement.unapplied] == [(REFERENCE_UNKNOWN, E2)]


def test_a_pain002_about_an_unknown_message_is_refused_even_without_outcomes() -> None:
    settlement = settle_report(pain002(original=OriginalMessage(B, "pain.001.001.09")), record(), targets=[],
                               sent=None, at=NOW)
    assert [u.code for u in settlement.unapplied] == [REFERENCE_UNKNOWN]


# --- facts filled in later -----------------------------------------------------------------------------------

def test_every_fact_rule_is_written_down() -> None:
    assert [rule[0] for rule in FACT_RULES] == ["booking date", "bank reference", "return reason"]


@pytest.mark.parametrize("state, kind", [(s, k) for s in LineState for k in OutcomeKind
                                         if row(s, k).target is None and not row(s, k).conflict])
def test_a_pair_that_moves_nothing_adds_a_reference_only_to_a_line_without_one(state, kind) -> None:
    reported = LineFacts(bank_reference="R2")
    assert filled_facts(state, kind, LineFacts(), reported) == LineFacts(bank_reference="R2")
    assert filled_facts(state, kind, LineFacts(bank_reference="R1"), reported) is None


def test_a_booking_date_comes_only_with_a_booking_of_what_the_line_is() -> None:
    booked = LineFacts(booked_on=DAY, bank_reference="BK")
    assert filled_facts(L.PAID, K.PAID, LineFacts(bank_reference="ST"), booked) == booked  # replaces the status ref
    assert filled_facts(L.RETURNED, K.RETURNED, LineFacts(), booked) == booked
    assert filled_facts(L.PAID, K.ACCEPTED, LineFacts(bank_reference="ST"), booked) is None  # late, not a booking
    assert filled_facts(L.PAID, K.PAID, LineFacts(DAY, "BK"), booked) is None  # the same booking again
    assert filled_facts(L.PAID, K.PAID, LineFacts(DAY, "BK"), LineFacts(DAY, "OTHER")) is None  # ref: first kept
    with pytest.raises(ValueError):
        filled_facts(L.PENDING, K.PAID, LineFacts(), booked)  # that pair moves the line: not a fill-in


def test_a_second_booking_on_another_day_is_a_conflict() -> None:
    with pytest.raises(Refusal) as caught:
        filled_facts(L.PAID, K.PAID, LineFacts(DAY, "BK"), LineFacts(LATER, "BK2"))
    assert caught.value.code == BOOKING_CONFLICT_CODE and "2026-12-09" in caught.value.message
    settlement = settle_report(camt054(booking(E1, on=LATER)), record("FB-C5-1"),
                               targets=[[line(state=L.PAID, booked_on=DAY)]], sent=None, at=NOW)
    assert [u.code for u in settlement.unapplied] == [BOOKING_CONFLICT_CODE]


def test_a_return_reason_is_filled_in_on_a_returned_line_without_one() -> None:
    reported = LineFacts(reason_code="AC01", reason_text="account number invalid")
    assert filled_facts(L.RETURNED, K.REJECTED, LineFacts(), reported) == reported
    assert filled_facts(L.RETURNED, K.REJECTED, LineFacts(reason_code="AC04"), reported) is None


def test_the_booking_after_the_settled_status_fills_in_the_date_without_moving_money() -> None:
    paid = line(state=L.PAID, bank_reference="FB01")
    settlement = settle_report(camt054(booking(E1)), record("FB-C5-1"), targets=[[paid]], sent=None, at=NOW)
    [change] = settlement.write.lines
    assert (change.expected, change.new, change.money, change.booked_on) == (L.PAID, L.PAID, None, DAY)
    assert change.fills_in and change.bank_reference == "FB01-BK" and change.expected_booked_on is None
    [event] = settlement.write.events
    assert event.detail["filled_in"] == 1 and event.detail["lines"] == {}


def test_a_repeat_that_adds_nothing_writes_nothing() -> None:
    booked = line(state=L.PAID, booked_on=DAY, bank_reference="FB01-BK")
    settlement = settle_report(camt054(booking(E1)), record("FB-C5-1"), targets=[[booked]], sent=None, at=NOW)
    assert settlement.write.lines == () and settlement.write.events == () and settlement.unapplied == ()


def _stored(row_: PaymentRow, change) -> PaymentRow:
    """What the store's UPDATE makes of ``row_`` (adapters/storage/bank.py: given facts written, None kept)."""
    from dataclasses import replace

    return replace(row_, state=change.new, bank_reference=change.bank_reference or row_.bank_reference,
                   booked_on=change.booked_on or row_.booked_on, reason_code=change.reason_code or row_.reason_code)


def _apply(row_: PaymentRow, reports) -> PaymentRow:
    for report in reports:
        settlement = settle_report(report, record(report.message_id), targets=[[row_]] * len(report.outcomes),
                                   sent=sent(), at=NOW)
        assert settlement.unapplied == ()
        for change in settlement.write.lines:
            row_ = _stored(row_, change)
    return row_


@settings(max_examples=100, deadline=None)
@given(st.permutations([0, 1, 2]), st.sampled_from(["ACSC", "ACSP"]))
def test_the_line_ends_the_same_whichever_report_comes_first(order, first_status) -> None:
    """pain.002 (ACSP or ACSC), camt.054 booking, and a late pain.002 ACSC, in any order: paid, booked on the
    booking's date, with the booking's reference."""
    kind = K.ACCEPTED if first_status == "ACSP" else K.PAID
    reports = [pain002(status(E1, kind, reference="ST"), report_id="FB-P2-1"),
               camt054(booking(E1, reference="BK"), report_id="FB-C5-1"),
               pain002(status(E1, K.PAID, reference="ST"), report_id="FB-P2-2")]
    final = _apply(line(), [reports[i] for i in order])
    assert (final.state, final.booked_on, final.bank_reference) == (L.PAID, DAY, "BK")
