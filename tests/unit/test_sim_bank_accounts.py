"""The simulated bank's payee account ledger: returns (退匯) belong to accounts, not to payments."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from simulators.bank_accounts import RETURN_REASONS, AccountLedger, PayeeAccount
from tests.unit.payment_samples import payment, payments
from tests.unit.sim_bank_samples import make_bank, statuses, transfer


def account(index: int, **changes) -> PayeeAccount:
    return dataclasses.replace(PayeeAccount.of(payment(index)), **changes)


def test_the_share_of_bad_accounts_is_the_return_rate_split_evenly_between_the_three_reasons():
    ledger = AccountLedger(seed=1, return_rate=0.3)
    found = Counter(ledger.reason(account(i)) for i in range(30_000))
    assert abs(sum(found[r] for r in RETURN_REASONS) / 30_000 - 0.3) < 0.015
    for reason in RETURN_REASONS:
        assert abs(found[reason] / 30_000 - 0.1) < 0.01, found
    assert set(found) == {None, *RETURN_REASONS}


@pytest.mark.parametrize(("rate", "bad"), [(0.0, 0), (1.0, 2_000)])
def test_a_rate_of_zero_returns_nothing_and_a_rate_of_one_returns_everything(rate, bad):
    ledger = AccountLedger(seed=4, return_rate=rate)
    assert sum(1 for i in range(2_000) if ledger.reason(account(i))) == bad


def test_a_rate_outside_zero_to_one_is_a_mistake():
    with pytest.raises(ValueError, match="share"):
        AccountLedger(return_rate=1.5)


def test_the_same_account_gets_the_same_answer_and_another_seed_draws_again():
    ledger = AccountLedger(seed=2, return_rate=0.2)
    first = [ledger.reason(account(i)) for i in range(3_000)]
    assert [AccountLedger(seed=2, return_rate=0.2).reason(account(i)) for i in range(3_000)] == first
    other = [AccountLedger(seed=3, return_rate=0.2).reason(account(i)) for i in range(3_000)]
    assert other != first and sum(1 for r in other if r) > 0


def test_a_corrected_account_number_is_a_fresh_draw_and_usually_paid():
    ledger = AccountLedger(seed=5, return_rate=0.1)
    bad = [i for i in range(5_000) if ledger.reason(account(i))]
    assert bad
    corrected = [ledger.reason(account(i, account_number=str(int(account(i).account_number) + 1))) for i in bad]
    assert sum(1 for r in corrected if r is None) / len(bad) > 0.8


def test_a_wrong_or_closed_account_stays_bad_whoever_is_paid_into_it_but_a_name_mismatch_is_the_payees():
    ledger = AccountLedger(seed=6, return_rate=0.6)
    by_reason: dict[str, list[int]] = {r: [] for r in RETURN_REASONS}
    for i in range(600):
        reason = ledger.reason(account(i))
        if reason:
            by_reason[reason].append(i)
    for reason in ("AC01", "AC04"):
        assert {ledger.reason(account(i, payee_name="另一人", payee_id="A123456789")) for i in by_reason[reason]} \
            == {reason}
    renamed = [ledger.reason(account(i, payee_name="另一人")) for i in by_reason["BE01"]]
    assert None in renamed  # the account itself is open and fine: another holder's name may match


def test_a_payroll_paying_the_same_people_again_is_returned_for_the_same_people(pki):
    bank = make_bank(pki, seed=9, return_rate=0.3)
    march = payments(40, voucher=1)
    april = [dataclasses.replace(p, voucher_id=q.voucher_id, end_to_end_id=q.end_to_end_id)
             for p, q in zip(march, payments(40, voucher=2))]  # same payees and accounts, new EndToEndIds
    answered = []
    for month in (march, april):
        status = bank.receive(transfer(pki, month)[1])[0][1]
        said = statuses(pki, status)
        answered.append([said[p.end_to_end_id] for p in month])
    assert answered[0] == answered[1]
    assert {kind for kind, _ in answered[0]} == {"paid", "rejected"}
    assert bank.counts.returned == 2 * sum(1 for kind, _ in answered[0] if kind == "rejected")


def test_tests_can_still_pick_returns_by_end_to_end_id(pki):
    bank = make_bank(pki, return_rate=0.0)
    sent = payments(3)
    bank.returns = lambda e2e: "AC01" if e2e == sent[1].end_to_end_id else None
    said = statuses(pki, bank.receive(transfer(pki, sent)[1])[0][1])
    assert said[sent[1].end_to_end_id] == ("rejected", "AC01")
    assert {said[p.end_to_end_id] for p in (sent[0], sent[2])} == {("paid", None)}
