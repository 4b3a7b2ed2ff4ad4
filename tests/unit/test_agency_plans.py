"""The simulated agencies' business mix (simulators/agency_plans.py): reproducible plans, the same staff on
every payroll, and corrections that are valid vouchers fixing what they were sent back or returned for."""

from __future__ import annotations

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.vouchers.check import validate_document
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.workflow.actions import Reason, ReasonCode
from simulators.agency_plans import (
    ALLOTTED,
    SUBJECTS,
    AgencyMix,
    Mix,
    allotments,
    allotments_csv,
    corrected,
    re_remittance,
)

TODAY = datetime.date(2026, 11, 27)
AGENCIES = ["379000001A", "379000002A", "379000003A"]


def mix(**kwargs) -> AgencyMix:
    return AgencyMix(AGENCIES, seed=kwargs.pop("seed", 5), run_tag=kwargs.pop("run_tag", "T1"), **kwargs)


def valid(voucher, banks) -> bool:
    parsed, problems = validate_document(voucher_to_xml(voucher), today=TODAY, banks=banks)
    assert problems == [], problems
    return parsed.voucher_id == voucher.voucher_id


def test_a_plan_is_the_same_whatever_the_order_plans_are_drawn_in():
    first, second = mix(), mix()
    forwards = [first.plan(i, TODAY) for i in range(30)]
    backwards = [second.plan(i, TODAY) for i in reversed(range(30))][::-1]
    assert forwards == backwards
    assert [p.agency for p in forwards[:3]] == AGENCIES  # agencies take turns


def test_run_tags_keep_two_runs_voucher_numbers_apart():
    one, other = mix(run_tag="A1").plan(7, TODAY).voucher, mix(run_tag="B2").plan(7, TODAY).voucher
    assert one.voucher_id != other.voucher_id and len(one.voucher_number) == 12


def test_every_payroll_pays_the_same_staff_with_this_months_amounts(banks):
    plans = mix(mix=Mix(payroll=1.0))
    a, b = plans.plan(0, TODAY).voucher, plans.plan(3, TODAY).voucher  # the same agency, two months
    assert a.agency_code == b.agency_code and 100 <= len(a.lines) <= 800
    staff = [(p.payee_id, p.bank_code, p.account_number) for p in a.lines]
    assert staff == [(p.payee_id, p.bank_code, p.account_number) for p in b.lines]
    assert a.total_amount == sum(p.amount for p in a.lines) and a.budget_subject == SUBJECTS[0]
    assert valid(a, banks)


def test_the_mix_keeps_its_shares_roughly():
    plans = mix(mix=Mix(payroll=0.0, subsidy=0.2, deputy=0.3, send_back=0.25))
    drawn = [plans.plan(i, TODAY) for i in range(600)]
    share = lambda pred: sum(1 for p in drawn if pred(p)) / len(drawn)  # noqa: E731
    assert 0.13 < share(lambda p: p.kind == "subsidy") < 0.27 and share(lambda p: p.kind == "payroll") == 0
    assert 0.22 < share(lambda p: p.deputy_reviews) < 0.38
    assert 0.18 < share(lambda p: p.send_back is not None) < 0.32


def test_payroll_first_makes_the_first_voucher_a_payroll():
    assert mix(mix=Mix(payroll=0.0, payroll_first=True)).plan(0, TODAY).kind == "payroll"


@settings(max_examples=40, deadline=None)
@given(index=st.integers(0, 5000), code=st.sampled_from([ReasonCode.AMOUNT_WRONG, ReasonCode.PAYEE_WRONG,
                                                          ReasonCode.SUPPORTING_DOCUMENTS_MISSING]))
def test_a_correction_is_a_valid_next_revision_fixing_what_was_pointed_at(banks, index, code):
    voucher = mix(mix=Mix(payroll=0.0)).plan(index, TODAY).voucher
    assert valid(voucher, banks)
    fixed = corrected(voucher, Reason(code, "x"))
    assert (fixed.revision, fixed.corrects) == (2, voucher.ref) and valid(fixed, banks)
    assert fixed.total_amount == sum(p.amount for p in fixed.lines)
    first, was = fixed.lines[0], voucher.lines[0]
    if code is ReasonCode.AMOUNT_WRONG:
        assert first.amount == max(1, was.amount - 100)
    elif code is ReasonCode.PAYEE_WRONG:
        assert first.account_number != was.account_number and len(first.account_number) == len(was.account_number)
    else:
        assert first == was


@settings(max_examples=40, deadline=None)
@given(index=st.integers(0, 5000), data=st.data())
def test_a_re_remittance_sends_only_the_returned_lines_to_new_accounts(banks, index, data):
    voucher = mix(mix=Mix(subsidy=1.0)).plan(index, TODAY).voucher
    returned = data.draw(st.sets(st.sampled_from([p.number for p in voucher.lines]), min_size=1))
    again = re_remittance(voucher, sorted(returned))
    assert valid(again, banks) and again.revision == voucher.revision + 1 and again.corrects == voucher.ref
    assert [p.number for p in again.lines] == list(range(1, len(returned) + 1))
    originals = [p for p in voucher.lines if p.number in returned]
    assert [(p.payee_id, p.amount) for p in again.lines] == [(p.payee_id, p.amount) for p in originals]
    assert all(p.account_number != o.account_number for p, o in zip(again.lines, originals))
    assert again.total_amount == sum(p.amount for p in originals) and again.line_count == len(returned)


def test_allotments_cover_every_agency_and_subject():
    rows = allotments(AGENCIES, TODAY)
    assert {(a, s) for a, _, s, _ in rows} == {(a, s) for a in AGENCIES for s in SUBJECTS}
    assert all(year == 115 and amount == ALLOTTED for _, year, _, amount in rows)
    assert allotments_csv(AGENCIES, TODAY).splitlines()[0] == "agency,fiscal_year,budget_subject,amount"
