"""Cutting payment lines into transfer messages: every line exactly once, totals that add up, ids that a retry
reproduces whatever order the lines come in."""

from __future__ import annotations

import dataclasses
import datetime
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bank.batching import (
    MAX_GROUPS_PER_MESSAGE,
    PaymentGroup,
    TransferPlan,
    message_id_for,
    payment_info_id_for,
    plan_transfers,
)
from gateway.bank.payments import MAX_ISO_ID
from tests.unit.payment_samples import EXECUTION_DATE, METHODS, payment, payments

MESSAGE_ID = re.compile(r"VGW[0-9]{8}-[0-9a-f]{16}")


def test_one_group_in_one_message() -> None:
    lines = payments(3)
    [plan] = plan_transfers(reversed(lines), max_per_message=10)
    assert MESSAGE_ID.fullmatch(plan.message_id) and plan.message_id.startswith("VGW20260312-")
    [group] = plan.groups
    assert group.payment_info_id == plan.message_id + "-01"
    assert group.method == "CreditTransfer" and group.execution_date == EXECUTION_DATE
    assert [p.end_to_end_id for p in group.payments] == sorted(p.end_to_end_id for p in lines)
    assert plan.count == group.count == 3
    assert plan.control_sum == group.control_sum == sum(p.amount for p in lines)


def test_groups_by_method_and_date_in_date_then_method_order() -> None:
    later = EXECUTION_DATE + datetime.timedelta(days=1)
    lines = [payment(0, method="TreasuryCheque"), payment(1, method="CreditTransfer"),
             payment(2, method="EntrustedTransfer", execution_date=later), payment(3, method="CreditTransfer")]
    [plan] = plan_transfers(lines, max_per_message=100)
    assert [(g.execution_date, g.method, g.count) for g in plan.groups] == [
        (EXECUTION_DATE, "CreditTransfer", 2), (EXECUTION_DATE, "TreasuryCheque", 1), (later, "EntrustedTransfer", 1)]
    assert [g.payment_info_id[-3:] for g in plan.groups] == ["-01", "-02", "-03"]


def test_a_group_larger_than_the_room_left_is_split_across_messages() -> None:
    lines = payments(5, method="CreditTransfer") + [payment(10 + i, method="TreasuryCheque") for i in range(4)]
    plans = plan_transfers(lines, max_per_message=3)
    assert [plan.count for plan in plans] == [3, 3, 3]
    assert [[(g.method, g.count) for g in plan.groups] for plan in plans] == [
        [("CreditTransfer", 3)], [("CreditTransfer", 2), ("TreasuryCheque", 1)], [("TreasuryCheque", 3)]]
    assert len({plan.message_id for plan in plans}) == 3


def test_a_message_holds_at_most_99_groups() -> None:
    lines = [payment(i, execution_date=EXECUTION_DATE + datetime.timedelta(days=i)) for i in range(100)]
    plans = plan_transfers(lines, max_per_message=5000)
    assert [len(plan.groups) for plan in plans] == [MAX_GROUPS_PER_MESSAGE, 1]
    assert plans[0].groups[-1].payment_info_id.endswith("-99")
    assert plans[1].message_id.startswith("VGW" + (EXECUTION_DATE + datetime.timedelta(days=99)).strftime("%Y%m%d"))


def test_ids_depend_only_on_the_payments_a_message_carries() -> None:
    lines = payments(6)
    first = plan_transfers(lines, max_per_message=3)
    # Planning the first message's lines again (a retry after a crash, without the rest): the same id.
    again = plan_transfers(lines[:3], max_per_message=3)
    assert again[0].message_id == first[0].message_id
    assert message_id_for(reversed(again[0].end_to_end_ids), EXECUTION_DATE) == again[0].message_id
    changed = plan_transfers([dataclasses.replace(lines[0], amount=lines[0].amount + 1), *lines[1:3]],
                             max_per_message=3)
    assert changed[0].message_id == first[0].message_id  # the id names the lines, not their amounts


def test_empty_input_plans_nothing() -> None:
    assert plan_transfers([], max_per_message=10) == []


@pytest.mark.parametrize("cap", [0, -1, True, 2.5, "10"])
def test_cap_must_be_a_positive_whole_number(cap) -> None:
    with pytest.raises(ValueError):
        plan_transfers(payments(2), max_per_message=cap)


def test_the_same_end_to_end_id_twice_is_refused_even_across_groups() -> None:
    line = payment(0)
    with pytest.raises(ValueError, match="more than once"):
        plan_transfers([line, dataclasses.replace(line, method="TreasuryCheque")], max_per_message=10)


def test_values_check_their_own_fields() -> None:
    [plan] = plan_transfers(payments(2), max_per_message=10)
    group = plan.groups[0]
    with pytest.raises(ValueError, match="control sum"):
        dataclasses.replace(group, control_sum=group.control_sum + 1)
    with pytest.raises(ValueError, match="sorted"):
        dataclasses.replace(group, payments=group.payments[::-1])
    with pytest.raises(ValueError, match="mixes"):
        dataclasses.replace(group, method="TreasuryCheque")
    with pytest.raises(ValueError, match="1 to 35"):
        dataclasses.replace(group, payment_info_id="X" * 36)
    with pytest.raises(ValueError, match="count or control sum"):
        dataclasses.replace(plan, count=plan.count + 1)
    with pytest.raises(ValueError, match="repeat"):
        dataclasses.replace(plan, groups=(group, group), count=2 * group.count, control_sum=2 * group.control_sum)
    with pytest.raises(ValueError):
        payment_info_id_for(plan.message_id, 100)


# --- properties ------------------------------------------------------------------------------------------------

_line = st.tuples(
    st.integers(1, 40),  # voucher
    st.integers(1, 9999),  # line
    st.sampled_from(METHODS),
    st.integers(0, 3),  # days after the first execution date
    st.integers(1, 99_999_999_999),  # amount: the voucher's largest
)


def _payments(rows) -> list:
    return [payment(0, voucher=voucher, line=line, method=method, amount=amount,
                    execution_date=EXECUTION_DATE + datetime.timedelta(days=days))
            for voucher, line, method, days, amount in rows]


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(_line, max_size=60, unique_by=lambda row: row[:2]), cap=st.integers(1, 25), data=st.data())
def test_plans_cover_every_payment_once_with_consistent_totals_and_ids(rows, cap, data) -> None:
    lines = _payments(rows)
    plans = plan_transfers(lines, max_per_message=cap)

    placed = [p for plan in plans for p in plan.payments]
    assert sorted(p.end_to_end_id for p in placed) == sorted(p.end_to_end_id for p in lines)
    assert len(placed) == len(set(placed)) == len(lines)
    assert sum(plan.count for plan in plans) == len(lines)
    assert sum(plan.control_sum for plan in plans) == sum(p.amount for p in lines)

    ids = [plan.message_id for plan in plans] + [g.payment_info_id for plan in plans for g in plan.groups]
    assert len(ids) == len(set(ids)) and all(0 < len(i) <= MAX_ISO_ID for i in ids)
    for plan in plans:
        assert 1 <= plan.count <= cap and MESSAGE_ID.fullmatch(plan.message_id)
        assert plan.message_id == message_id_for(plan.end_to_end_ids, min(g.execution_date for g in plan.groups))
        assert plan.count == sum(g.count for g in plan.groups)
        assert plan.control_sum == sum(g.control_sum for g in plan.groups)
        keys = [(g.execution_date, g.method) for g in plan.groups]
        assert keys == sorted(set(keys))  # one group per (date, method) in a message, in order
        for group in plan.groups:
            assert group.payment_info_id.startswith(plan.message_id + "-")
            assert all(p.method == group.method and p.execution_date == group.execution_date for p in group.payments)
    # Messages are filled before the next is begun: only the last may hold fewer than the cap.
    assert all(plan.count == cap for plan in plans[:-1])

    shuffled = data.draw(st.permutations(lines))
    assert plan_transfers(shuffled, max_per_message=cap) == plans


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(_line, min_size=1, max_size=40, unique_by=lambda row: row[:2]))
def test_plans_are_values_that_check_themselves(rows) -> None:
    for plan in plan_transfers(_payments(rows), max_per_message=7):
        assert isinstance(plan, TransferPlan) and all(isinstance(g, PaymentGroup) for g in plan.groups)
        assert TransferPlan(plan.message_id, plan.groups, plan.control_sum, plan.count) == plan
