"""What one bank outcome does to one payment line: one table of every (state, outcome) pair, and the money.

A payment line is ``pending`` (sent), ``accepted``, ``paid`` or ``returned`` (gateway/bank/payments.py).
Bank reports arrive over a queue: twice (a redelivery, a cumulative status report), late (a pain.002
acceptance processed after the camt.054 booking), and from two message types that each tell part of the
story. The rules, each a row below with its reason:

- idempotent: an outcome the line already reflects changes nothing (``None``);
- out of order: news older than the line's state changes nothing (ACCEPTED after PAID);
- paid may still be returned (退匯 after settlement), and returned is final;
- a contradiction — the bank said paid and now rejected, or rejected and now paid — is refused with
  ``bank-outcome-conflict``: which of the two is true decides whether money left the treasury, and the
  line's state alone cannot tell, so a person must look (the consumer records it, the line stays as is).

Why a table, as in gateway/workflow/transitions.py: the whole policy is reviewable in one screen, the tests enumerate it,
and no adapter can add a path it does not have. Pure: no I/O, no clock.

Facts, per line (:func:`filled_facts`): a report that leaves a line's state as it is may still add what the
line lacks. The usual order is the pain.002 ACSC (paid, no booking date) and then the camt.054 booking; the
booking is "a repeat of paid" for the table, but its booking date (入帳日, on the statement and the deposit
notice) and its reference are news. :data:`FACT_RULES` says which facts are filled in later and which are a
conflict when they differ, so the line ends the same whichever report came first.

Money, per line (:func:`money_move`): the amount is reserved when the treasury accepts the voucher; paid
consumes the reservation; returned frees it — from the reservation if the line was never paid, from spending
if it was. The money a line holds depends on its state alone, so any path to the same state moves the same
money in total.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from gateway.bank.payments import LineState, OutcomeKind
from gateway.errors import Refusal

CONFLICT_CODE = "bank-outcome-conflict"
BOOKING_CONFLICT_CODE = "bank-booking-conflict"


@dataclass(frozen=True)
class Row:
    """One (line state, outcome) pair: the state it moves the line to, or ``None`` (nothing changes), or a
    conflict; ``why`` is the reason, shown in a conflict's message."""

    state: LineState
    kind: OutcomeKind
    target: LineState | None
    conflict: bool = False
    why: str = ""

    def __post_init__(self) -> None:
        if self.conflict and self.target is not None:
            raise ValueError("a conflict moves nothing")
        if self.target is self.state:
            raise ValueError("a row that keeps the state says None, not the same state")
        if not self.why:
            raise ValueError("every row says why")


L, K = LineState, OutcomeKind

ROWS: tuple[Row, ...] = (
    # Sent, no answer yet: anything the bank says is news.
    Row(L.PENDING, K.ACCEPTED, L.ACCEPTED, why="the bank took the payment for execution"),
    Row(L.PENDING, K.PAID, L.PAID, why="settled; a booking may arrive before any status report"),
    Row(L.PENDING, K.REJECTED, L.RETURNED, why="refused before settlement: the money never left"),
    Row(L.PENDING, K.RETURNED, L.RETURNED,
        why="a return before any other news: it was paid and came back, so nothing was spent"),
    # Accepted: waiting for settlement.
    Row(L.ACCEPTED, K.ACCEPTED, None, why="a repeat (another acceptance step, or the same report again)"),
    Row(L.ACCEPTED, K.PAID, L.PAID, why="settled"),
    Row(L.ACCEPTED, K.REJECTED, L.RETURNED,
        why="refused after acceptance (e.g. by the payee's bank), still before settlement"),
    Row(L.ACCEPTED, K.RETURNED, L.RETURNED, why="paid and returned; the booking of the payment came later or not"),
    # Paid: only a return can follow.
    Row(L.PAID, K.ACCEPTED, None, why="late: an acceptance the settlement already superseded"),
    Row(L.PAID, K.PAID, None, why="a repeat (the status report and the booking both say so)"),
    Row(L.PAID, K.REJECTED, None, conflict=True,
        why="the bank reported the payment settled and now rejected; which is true decides whether money "
            "left the treasury"),
    Row(L.PAID, K.RETURNED, L.RETURNED, why="退匯 after settlement: the money came back"),
    # Returned: final.
    Row(L.RETURNED, K.ACCEPTED, None, why="late: an acceptance the return already superseded"),
    Row(L.RETURNED, K.PAID, None, conflict=True,
        why="a settlement after the line was returned is either the late confirmation of a payment since "
            "returned or a payment the bank rejected and executed all the same; the line cannot tell which, "
            "and in the second case money left the treasury"),
    Row(L.RETURNED, K.REJECTED, None, why="not paid either way: a repeat, or a late rejection"),
    Row(L.RETURNED, K.RETURNED, None, why="a repeat"),
)

del L, K

_TABLE: dict[tuple[LineState, OutcomeKind], Row] = {}
for _row in ROWS:
    assert (_row.state, _row.kind) not in _TABLE, f"two rows for {_row}"
    _TABLE[(_row.state, _row.kind)] = _row
assert len(_TABLE) == len(LineState) * len(OutcomeKind), "every (state, outcome) pair has its row"

FINAL = frozenset({LineState.RETURNED})
"""No outcome moves a returned line. (A paid line is final for the voucher, but may still be returned.)"""


def row(state: LineState, kind: OutcomeKind) -> Row:
    """The table's row for ``state`` and ``kind``."""
    return _TABLE[(state, kind)]


def apply_outcome(state: LineState, kind: OutcomeKind) -> LineState | None:
    """The line's new state after the bank reports ``kind``; None when nothing changes (a repeat, or a late
    report already superseded). Raises Refusal ``bank-outcome-conflict`` when the report contradicts what the
    bank said before."""
    found = _TABLE[(state, kind)]
    if found.conflict:
        raise Refusal(CONFLICT_CODE, f"the payment is {state.value} and the bank now reports it {kind.value}: "
                      f"{found.why}")
    return found.target


@dataclass(frozen=True)
class LineFacts:
    """What a line records besides its state: as stored (``known``), as an outcome reports it, or — from
    :func:`filled_facts` — what to write (None: keep what is stored)."""

    booked_on: datetime.date | None = None
    bank_reference: str | None = None
    reason_code: str | None = None
    reason_text: str | None = None


FACT_RULES: tuple[tuple[str, str, str], ...] = (
    ("booking date", "a booking of what the line already is (camt.054 paid on a paid line, returned on a "
                     "returned line)",
     "filled in when the line has none, together with the booking's bank reference (which replaces a status "
     "report's); the same date again is a repeat; another date is a conflict (bank-booking-conflict): one "
     "payment booked on two days may have been paid twice, so a person looks"),
    ("bank reference", "any outcome",
     "filled in when the line has none; otherwise the first is kept and a different one is not compared: it is "
     "shown to people and never matched on (the EndToEndId in its message and block is)"),
    ("return reason", "a rejection or return on a returned line",
     "filled in (code and text) when the line has no code; otherwise the first is kept"),
)
"""(fact, which outcomes may bring it to a line whose state they leave as it is, what happens): the policy of
:func:`filled_facts`, shown in docs/architecture.md."""


def filled_facts(state: LineState, kind: OutcomeKind, known: LineFacts, reported: LineFacts) -> LineFacts | None:
    """What an outcome ``kind`` that leaves a ``state`` line as it is adds to the line's ``known`` facts (see
    :data:`FACT_RULES`): the facts to write, or None when it adds nothing. Raises Refusal
    ``bank-booking-conflict`` for a second booking on another date. Only for (state, kind) pairs whose row
    moves nothing and is no conflict (ValueError otherwise: that is the caller's bug)."""
    found = _TABLE[(state, kind)]
    if found.conflict or found.target is not None:
        raise ValueError(f"{state.value} + {kind.value} is not a pair that leaves the line as it is")
    booked = reference = code = text = None
    same_event = (state, kind) in ((LineState.PAID, OutcomeKind.PAID), (LineState.RETURNED, OutcomeKind.RETURNED))
    if same_event and reported.booked_on is not None:
        if known.booked_on is None:
            booked, reference = reported.booked_on, reported.bank_reference
        elif known.booked_on != reported.booked_on:
            raise Refusal(BOOKING_CONFLICT_CODE, f"the {state.value} payment was booked on "
                          f"{known.booked_on.isoformat()} and the bank now reports a booking on "
                          f"{reported.booked_on.isoformat()}: booked twice would mean paid twice, so a person "
                          "must look")
    if reference is None and known.bank_reference is None:
        reference = reported.bank_reference
    if state is LineState.RETURNED and kind in (OutcomeKind.REJECTED, OutcomeKind.RETURNED) \
            and known.reason_code is None and reported.reason_code is not None:
        code, text = reported.reason_code, reported.reason_text
    if booked is None and reference is None and code is None:
        return None
    return LineFacts(booked, reference, code, text)


MONEY_MOVES = ("consume", "free-reserved", "free-consumed")
"""What a line's change does to its budget: the reservation becomes spending; the reservation is released;
spending is released (the money came back)."""

_OPEN = (LineState.PENDING, LineState.ACCEPTED)
_MONEY: dict[tuple[LineState, LineState], str | None] = {
    **{(before, LineState.PAID): "consume" for before in _OPEN},
    **{(before, LineState.RETURNED): "free-reserved" for before in _OPEN},
    (LineState.PAID, LineState.RETURNED): "free-consumed",
    (LineState.PENDING, LineState.ACCEPTED): None,
    **{(state, state): None for state in LineState},
}


def money_move(before: LineState, after: LineState) -> str | None:
    """What moving a line from ``before`` to ``after`` — in one step or through several outcomes of one report —
    does to its money: ``consume``, ``free-reserved``, ``free-consumed`` or None. Raises ValueError for a move
    no sequence of outcomes makes (e.g. paid back to pending): that is a bug, not a bank's doing."""
    try:
        return _MONEY[(before, after)]
    except KeyError:
        raise ValueError(f"a payment line never moves from {before.value} to {after.value}") from None


def money_held(state: LineState) -> str:
    """Where a line's amount sits in its state: ``reserved`` (open), ``consumed`` (paid) or ``free`` (returned).
    Every path to a state ends with the money here, which is what the money moves preserve."""
    if state in _OPEN:
        return "reserved"
    return "consumed" if state is LineState.PAID else "free"
