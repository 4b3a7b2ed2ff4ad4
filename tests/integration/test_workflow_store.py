"""The workflow's storage contract on SQLite and a real PostgreSQL: compare-and-set status changes, one
action per stage, and allotted budgets that never go negative, also when threads release at once."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import threading

import pytest

from gateway.errors import Refusal
from gateway.store import (
    ActionAlreadyStored,
    ActionRecord,
    AuditEvent,
    BudgetChanged,
    BudgetOp,
    PayeeEntry,
    StatusChange,
    StatusChanged,
    StoreError,
    WorkflowWrite,
)
from gateway.treasury.budget import Allotment, BudgetBalance, BudgetKey

from .test_store_contract import AGENCY_A, T0, backend, intake_event, make_record, pg_database, store  # noqa: F401

YEAR, SUBJECT = 115, "5101010100"
KEY = BudgetKey(AGENCY_A, YEAR, SUBJECT)


def stored(store, number: int, status: str = "received"):
    record = make_record(number, revision=1, status=status)
    store.record_intake(record, intake_event(record))
    return record


def change(record, new_status: str, *, expected: str | None = None, new_chain: str | None = None) -> StatusChange:
    return StatusChange(record.voucher_id, record.revision, expected_status=expected or record.status,
                        expected_chain=record.chain_sha256, new_status=new_status,
                        new_chain=new_chain or record.chain_sha256, at=T0)


def event(record, action: str, sha: str | None = None) -> AuditEvent:
    return AuditEvent(T0, "cert:test#1", action, record.subject, sha, {"status": action})


def action_record(record, stage: str, body: bytes, status_after: str) -> ActionRecord:
    return ActionRecord(voucher_id=record.voucher_id, revision=record.revision, stage=stage, agency=record.agency,
                        decision="approve", action_sha256=hashlib.sha256(body).hexdigest(), action_bytes=body,
                        signed_at=T0, received_at=T0, person="reviewer", key_sha256="ab" * 32,
                        certificate="cert:test#1", grant_kind="principal", receipt_id=f"R-{stage}-{record.voucher_id}",
                        receipt_xml=b"<Receipt/>", status_after=status_after)


def reserve(record, amount: int) -> BudgetOp:
    return BudgetOp("reserve", record.voucher_id, record.revision, AGENCY_A, YEAR, SUBJECT, amount)


def load(store, amount: int) -> None:
    store.load_allotments([Allotment(AGENCY_A, YEAR, SUBJECT, amount)],
                          AuditEvent(T0, "operator:test", "budget.load", "allotments:test", None, {}))


def test_a_status_change_applies_only_to_the_state_it_was_decided_on(store):
    record = stored(store, 1)
    body = b"<Action>review</Action>"
    sha = hashlib.sha256(body).hexdigest()
    first = WorkflowWrite((change(record, "reviewed", new_chain=sha),), (event(record, "action.approve", sha),),
                          action=action_record(record, "reviewer", body, "reviewed"))
    store.apply_workflow(first)
    after = store.get(record.voucher_id, 1)
    assert (after.status, after.chain_sha256) == ("reviewed", sha)
    audit_before = len(store.audit_entries())
    with pytest.raises(StatusChanged):  # decided on "received": stale now
        store.apply_workflow(WorkflowWrite((change(record, "rejected"),), (event(record, "action.reject"),)))
    assert store.get(record.voucher_id, 1) == after and len(store.audit_entries()) == audit_before
    other = b"<Action>another review</Action>"
    with pytest.raises(ActionAlreadyStored) as caught:  # the stage is taken, whatever the status says
        store.apply_workflow(WorkflowWrite((change(after, "reviewed"),),
                                           (event(after, "action.approve", hashlib.sha256(other).hexdigest()),),
                                           action=action_record(after, "reviewer", other, "reviewed")))
    assert caught.value.existing.action_bytes == body
    assert [a.stage for a in store.actions(record.voucher_id, 1)] == ["reviewer"]
    assert [e.event.action for e in store.history(record.subject)] == ["voucher.received", "action.approve"]


def test_queues_list_a_status_oldest_first_per_agency(store):
    records = [stored(store, n) for n in (11, 12, 13)]
    store.apply_workflow(WorkflowWrite((change(records[1], "reviewed"),), (event(records[1], "x"),)))
    assert [r.voucher_id for r in store.queue("received", agency=AGENCY_A)] == [records[0].voucher_id,
                                                                                records[2].voucher_id]
    assert store.queue("received", agency="379000002A") == []


def test_reservations_move_money_between_buckets_and_a_release_gives_it_back(store):
    load(store, 1_000)
    a, b = stored(store, 21, "released"), stored(store, 22, "released")
    store.apply_workflow(WorkflowWrite((change(a, "treasury-accepted"),), (event(a, "t"),), budget=(reserve(a, 600),),
                                       payees=(PayeeEntry(a.voucher_id, 1, 1, "cd" * 32),)))
    assert store.budget_balance(KEY) == BudgetBalance(1_000, 600, 0)
    with pytest.raises(BudgetChanged):
        store.apply_workflow(WorkflowWrite((change(b, "treasury-accepted"),), (event(b, "t"),),
                                           budget=(reserve(b, 401),)))
    assert store.get(b.voucher_id, 1).status == "released"  # nothing of the refused write stayed
    consume = BudgetOp("consume", a.voucher_id, 1, AGENCY_A, YEAR, SUBJECT, 600)
    a2 = store.get(a.voucher_id, 1)
    store.apply_workflow(WorkflowWrite((change(a2, "paid"),), (event(a2, "p"),), budget=(consume,)))
    assert store.budget_balance(KEY) == BudgetBalance(1_000, 0, 600)
    a3 = store.get(a.voucher_id, 1)
    free = BudgetOp("free", a.voucher_id, 1, AGENCY_A, YEAR, SUBJECT, 600)
    store.apply_workflow(WorkflowWrite((change(a3, "returned"),), (event(a3, "r"),), budget=(free,)))
    assert store.budget_balance(KEY) == BudgetBalance(1_000, 0, 0)
    with pytest.raises(StoreError, match="budget-reservation-unknown"):
        a4 = store.get(a.voucher_id, 1)
        store.apply_workflow(WorkflowWrite((change(a4, "returned", expected="returned"),), (event(a4, "r"),),
                                           budget=(free,)))
    assert store.earlier_payments(["cd" * 32], since=T0 - datetime.timedelta(days=1),
                                  exclude_voucher="none") == [("cd" * 32, a.voucher_id, 1, 1, "returned")]
    assert store.earlier_payments(["cd" * 32], since=T0 - datetime.timedelta(days=1), exclude_voucher=a.voucher_id) == []


def test_an_allotment_file_may_not_lower_an_allotment_below_what_is_committed(store):
    load(store, 1_000)
    a = stored(store, 31, "released")
    store.apply_workflow(WorkflowWrite((change(a, "treasury-accepted"),), (event(a, "t"),), budget=(reserve(a, 700),)))
    with pytest.raises(Refusal) as caught:
        load(store, 699)
    assert caught.value.code == "budget-allotment-too-low"
    assert store.budget_balance(KEY) == BudgetBalance(1_000, 700, 0)
    load(store, 700)
    assert store.budget_balance(KEY) == BudgetBalance(700, 700, 0)
    assert store.budget_balance(BudgetKey(AGENCY_A, YEAR, "9999999999")) is None


def test_eight_threads_releasing_against_one_allotment_never_overspend_it(store):
    """Each thread releases its own vouchers of NT$ 300 against NT$ 3,000: exactly ten reservations fit."""
    load(store, 3_000)
    records = [stored(store, 100 + n, "released") for n in range(40)]
    barrier = threading.Barrier(8)
    taken, refused, errors = [], [], []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for record in records[t::8]:
                try:
                    store.apply_workflow(WorkflowWrite((change(record, "treasury-accepted"),), (event(record, "t"),),
                                                       budget=(reserve(record, 300),)))
                    taken.append(record.voucher_id)
                except BudgetChanged:
                    refused.append(record.voucher_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(taken) == 10 and len(refused) == 30
    assert store.budget_balance(KEY) == BudgetBalance(3_000, 3_000, 0)
    assert {r.voucher_id for r in store.queue("treasury-accepted", limit=100)} == set(taken)


def test_due_dates_round_trip_and_queue_counts_report_the_overdue(store):
    today = datetime.date(2026, 12, 1)
    for number, due in ((41, datetime.date(2026, 11, 30)), (42, today), (43, None)):
        record = dataclasses.replace(make_record(number, revision=1), due_on=due)
        store.record_intake(record, intake_event(record))
        assert store.get(record.voucher_id, 1).due_on == due
    counts = store.queue_counts(["received", "held"], overdue_before=today)
    assert counts == {"received": (3, 1), "held": (0, 0)}


def test_queue_metrics_read_the_store(store):
    from prometheus_client import CollectorRegistry, generate_latest

    from adapters.serve.queue_metrics import WorkflowQueueMetrics

    record = dataclasses.replace(make_record(51, revision=1), due_on=datetime.date(2026, 1, 5))
    store.record_intake(record, intake_event(record))
    registry = CollectorRegistry()
    WorkflowQueueMetrics(registry, store, clock=lambda: T0.replace(year=2026, month=6)).refresh()
    text = generate_latest(registry).decode()
    assert 'vgw_workflow_queue_items{status="received"} 1.0' in text
    assert 'vgw_workflow_queue_overdue{status="received"} 1.0' in text
    assert 'vgw_workflow_queue_items{status="held"} 0.0' in text
