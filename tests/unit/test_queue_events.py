"""Which audit entries become queue or status events, for whom, under which routing key, saying what."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest

from gateway.store import AuditEntry, AuditEvent
from gateway.trust.roles import TREASURY_AGENCY
from gateway.workflow.queue_events import QueueEvent, event_of, revision_of
from gateway.workflow.transitions import Status

AT = datetime.datetime(2026, 3, 2, 1, 0, 0, 250000, tzinfo=datetime.timezone.utc)
VOUCHER = "379000001A-115-0001000001"


def entry(status: str | None, *, seq: int = 7, subject: str = f"{VOUCHER}#2", **detail) -> AuditEntry:
    if status is not None:
        detail["status"] = status
    return AuditEntry(seq, AuditEvent(AT, "gateway", "workflow.test", subject, None, detail), "0" * 64, "1" * 64)


EXPECTED = {
    # status entered -> (routing key, role) ; None: no event
    "received": ("queue.379000001A.reviewer", "reviewer"),
    "reviewed": ("queue.379000001A.accountant", "accountant"),
    "accountant-approved": ("queue.379000001A.head", "head"),
    "head-approved": ("queue.379000001A.releaser", "releaser"),
    "rejected": ("queue.379000001A.preparer", "preparer"),
    "held": (f"queue.{TREASURY_AGENCY}.treasury", "treasury"),
    "treasury-accepted": ("status.379000001A.treasury-accepted", None),
    "paid": ("status.379000001A.paid", None),
    "returned": ("status.379000001A.returned", None),
    "released": None,
    "batched": None,
    "superseded": None,
    "cancelled": None,
}


def test_every_status_of_the_workflow_is_decided():
    assert set(EXPECTED) == {status.value for status in Status}


@pytest.mark.parametrize("status", sorted(EXPECTED))
def test_each_status_publishes_to_its_queue_its_status_key_or_nothing(status):
    event = event_of(entry(status))
    if EXPECTED[status] is None:
        assert event is None
        return
    routing_key, role = EXPECTED[status]
    assert (event.routing_key, event.role, event.status) == (routing_key, role, status)
    assert (event.event_id, event.voucher_id, event.revision, event.at) == (7, VOUCHER, 2, AT)


def test_the_body_is_canonical_json_with_the_documented_fields():
    event = event_of(entry("rejected", reason_code="amount-wrong"))
    event = dataclasses.replace(event, due_on=datetime.date(2026, 3, 9))
    assert json.loads(event.body()) == {
        "event_id": 7, "agency": "379000001A", "voucher_id": VOUCHER, "revision": 2, "status": "rejected",
        "role": "preparer", "at": "2026-03-02T01:00:00.250000Z", "due_on": "2026-03-09", "reason_code": "amount-wrong"}
    assert event.body() == json.dumps(json.loads(event.body()), sort_keys=True, separators=(",", ":")).encode()
    bare = json.loads(event_of(entry("paid")).body())
    assert "due_on" not in bare and "reason_code" not in bare and bare["role"] is None


@pytest.mark.parametrize("audit", [
    entry(None),  # no status in the detail
    entry("no-such-status"),
    entry("received", subject="allotments:budget.csv"),  # not about a voucher revision (budget.load)
    entry("received", subject=f"{VOUCHER}#two"),
    entry(None, status_code=3),
])
def test_entries_that_are_not_status_changes_of_a_revision_publish_nothing(audit):
    assert event_of(audit) is None


def test_a_subject_names_a_voucher_and_a_revision():
    assert revision_of(f"{VOUCHER}#12") == (VOUCHER, 12)
    assert revision_of(VOUCHER) is None and revision_of("#1") is None and revision_of(f"{VOUCHER}#") is None


def test_a_word_that_would_break_the_routing_key_is_refused():
    with pytest.raises(ValueError, match="routing-key word"):
        event_of(entry("received", subject="379.00001A-115-1#1"))
    with pytest.raises(ValueError, match="routing-key word"):
        QueueEvent(1, "379000001A", VOUCHER, 1, "received", "review#", AT)
