"""The per-line reducer: every row of the table, the rules it stands for, and properties over any arrival order."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bank import store as bank_store
from gateway.bank.outcomes import CONFLICT_CODE, FINAL, MONEY_MOVES, ROWS, apply_outcome, money_held, money_move, row
from gateway.bank.payments import LineState, OutcomeKind
from gateway.errors import Refusal
from gateway.problems import TITLES

L, K = LineState, OutcomeKind

# The whole policy, written out once more by hand: (state, outcome) -> new state, None (nothing) or "conflict".
EXPECTED = {
    (L.PENDING, K.ACCEPTED): L.ACCEPTED, (L.PENDING, K.PAID): L.PAID,
    (L.PENDING, K.REJECTED): L.RETURNED, (L.PENDING, K.RETURNED): L.RETURNED,
    (L.ACCEPTED, K.ACCEPTED): None, (L.ACCEPTED, K.PAID): L.PAID,
    (L.ACCEPTED, K.REJECTED): L.RETURNED, (L.ACCEPTED, K.RETURNED): L.RETURNED,
    (L.PAID, K.ACCEPTED): None, (L.PAID, K.PAID): None,
    (L.PAID, K.REJECTED): "conflict", (L.PAID, K.RETURNED): L.RETURNED,
    (L.RETURNED, K.ACCEPTED): None, (L.RETURNED, K.PAID): "conflict",
    (L.RETURNED, K.REJECTED): None, (L.RETURNED, K.RETURNED): None,
}


@pytest.mark.parametrize(("state", "kind"), list(EXPECTED))
def test_every_row(state: LineState, kind: OutcomeKind) -> None:
    expected = EXPECTED[(state, kind)]
    if expected == "conflict":
        with pytest.raises(Refusal) as caught:
            apply_outcome(state, kind)
        assert caught.value.code == CONFLICT_CODE
        assert state.value in caught.value.message and kind.value in caught.value.message
    else:
        assert apply_outcome(state, kind) is expected
    assert row(state, kind).why


def test_the_table_has_one_row_per_pair_and_nothing_else() -> None:
    assert {(r.state, r.kind) for r in ROWS} == set(EXPECTED) and len(ROWS) == len(EXPECTED)


def test_conflict_code_is_documented() -> None:
    assert CONFLICT_CODE in TITLES


def test_idempotent_the_same_outcome_twice_changes_nothing_the_second_time() -> None:
    for state, kind in itertools.product(LineState, OutcomeKind):
        try:
            after = apply_outcome(state, kind)
        except Refusal:
            continue
        if after is not None:
            assert apply_outcome(after, kind) is None, (state, kind)


def test_out_of_order_a_booking_before_the_acceptance_stays_paid() -> None:
    """camt.054 PAID processed before pain.002 ACCP: the acceptance is old news."""
    assert apply_outcome(L.PENDING, K.PAID) is L.PAID
    assert apply_outcome(L.PAID, K.ACCEPTED) is None


def test_paid_can_be_returned_and_returned_is_final() -> None:
    assert apply_outcome(L.PAID, K.RETURNED) is L.RETURNED
    assert FINAL == {L.RETURNED}
    for kind in OutcomeKind:
        try:
            assert apply_outcome(L.RETURNED, kind) is None
        except Refusal as refusal:
            assert refusal.code == CONFLICT_CODE


def test_a_return_before_anything_else_means_paid_and_returned() -> None:
    assert apply_outcome(L.PENDING, K.RETURNED) is L.RETURNED
    assert money_move(L.PENDING, L.RETURNED) == "free-reserved"


def test_contradictions_are_refused_in_both_orders() -> None:
    with pytest.raises(Refusal, match="settled and now rejected"):
        apply_outcome(L.PAID, K.REJECTED)
    with pytest.raises(Refusal, match="after the line was returned"):
        apply_outcome(L.RETURNED, K.PAID)


def test_money_moves() -> None:
    assert MONEY_MOVES == bank_store.MONEY_MOVES
    assert money_move(L.PENDING, L.PAID) == money_move(L.ACCEPTED, L.PAID) == "consume"
    assert money_move(L.PENDING, L.RETURNED) == money_move(L.ACCEPTED, L.RETURNED) == "free-reserved"
    assert money_move(L.PAID, L.RETURNED) == "free-consumed"
    assert money_move(L.PENDING, L.ACCEPTED) is None
    for state in LineState:
        assert money_move(state, state) is None
    for before, after in [(L.PAID, L.PENDING), (L.PAID, L.ACCEPTED), (L.RETURNED, L.PAID), (L.ACCEPTED, L.PENDING),
                          (L.RETURNED, L.PENDING)]:
        with pytest.raises(ValueError):
            money_move(before, after)


def test_every_row_that_moves_has_a_money_move() -> None:
    for r in ROWS:
        if r.target is not None:
            assert money_move(r.state, r.target) in (*MONEY_MOVES, None)


# --- properties over any arrival order ---------------------------------------------------------------------------

POSITION = {"consume": ("reserved", "consumed"), "free-reserved": ("reserved", "free"),
            "free-consumed": ("consumed", "free")}


def fold(kinds, start: LineState = L.PENDING, amount: int = 1000):
    """Apply ``kinds`` in order as a consumer does, skipping conflicts; returns (final state, conflicts, money)."""
    state, conflicts = start, 0
    money = {"reserved": 0, "consumed": 0, "free": 0}
    money[money_held(start)] = amount
    for kind in kinds:
        try:
            after = apply_outcome(state, kind)
        except Refusal:
            conflicts += 1
            continue
        if after is None:
            continue
        move = money_move(state, after)
        if move is not None:
            source, target = POSITION[move]
            money[source] -= amount
            money[target] += amount
        assert all(value >= 0 for value in money.values()), (kinds, money)
        state = after
    return state, conflicts, money


kinds_lists = st.lists(st.sampled_from(list(OutcomeKind)), max_size=8)


@settings(max_examples=400, deadline=None)
@given(kinds_lists)
def test_final_state_follows_from_what_was_said(kinds) -> None:
    final, conflicts, _money = fold(kinds)
    said = set(kinds)
    if K.RETURNED in said:
        assert final is L.RETURNED
    elif K.PAID in said and K.REJECTED in said:
        # A contradiction: whichever came first stands, and it is always flagged.
        first = next(k for k in kinds if k in (K.PAID, K.REJECTED))
        assert final is (L.PAID if first is K.PAID else L.RETURNED)
        assert conflicts >= 1
    elif K.REJECTED in said:
        assert final is L.RETURNED
    elif K.PAID in said:
        assert final is L.PAID
    elif K.ACCEPTED in said:
        assert final is L.ACCEPTED
    else:
        assert final is L.PENDING


@settings(max_examples=300, deadline=None)
@given(kinds_lists.flatmap(lambda kinds: st.tuples(st.just(kinds), st.permutations(kinds))))
def test_any_order_gives_the_same_final_state(pair) -> None:
    """Tolerant of reordering: two arrival orders of the same outcomes end in the same state — unless the bank
    contradicted itself (paid and rejected), which is flagged either way."""
    kinds, shuffled = pair
    one, two = fold(kinds), fold(shuffled)
    if {K.PAID, K.REJECTED} <= set(kinds) and K.RETURNED not in kinds:
        assert one[1] >= 1 and two[1] >= 1
    else:
        assert one[0] is two[0]


@settings(max_examples=300, deadline=None)
@given(kinds_lists)
def test_conflicts_only_where_paid_meets_rejected_or_a_payment_follows_a_return(kinds) -> None:
    _final, conflicts, _money = fold(kinds)
    if conflicts:
        said = set(kinds)
        late_payment = any(k is K.PAID and ({K.RETURNED, K.REJECTED} & set(kinds[:i])) for i, k in enumerate(kinds))
        assert {K.PAID, K.REJECTED} <= said or late_payment


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(list(LineState)), kinds_lists, st.integers(min_value=1, max_value=10**12))
def test_money_is_conserved_and_follows_the_state(start, kinds, amount) -> None:
    """Whatever the path, the line's amount is in exactly one place, the place its final state says; and the
    one combined move from start to final (what a report write stores) lands it there too."""
    final, _conflicts, money = fold(kinds, start, amount)
    assert sum(money.values()) == amount
    assert money[money_held(final)] == amount
    combined = money_move(start, final)
    if combined is None:
        assert money_held(start) == money_held(final)
    else:
        assert POSITION[combined] == (money_held(start), money_held(final))
