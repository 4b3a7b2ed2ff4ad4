"""Bank reports bound to exactly what was sent, end to end, on SQLite and a real PostgreSQL, over the in-process
transport and a real RabbitMQ.

Every crafted report here carries the bank's real signature: these are the mistakes and replays a real agent
bank's systems can make. Each is dead-lettered with its code, changes nothing (lines, audit log, budgets,
stored reports), leaves `vgw audit reconcile` holding, and the consumer goes on to apply the genuine reports
after it — in both orders of status report and booking, which end with the same booking date.
"""

from __future__ import annotations

import copy
import datetime
import os

import pytest
from lxml import etree

from adapters.bank.transport import InProcessBankTransport
from gateway.bank.envelope import envelope_element
from gateway.bank.pain001 import TAIPEI_TREASURY
from gateway.bank.payments import LineState
from gateway.bank.report_writing import build_camt054, build_pain002
from gateway.bank.reports import PAIN002_NS
from gateway.bank.settlement import BANK_NAME, GATEWAY_NAME, REPORT_ROUTING
from gateway.business_time import TAIPEI
from gateway.reconciliation import reconcile
from gateway.xmlsec.signing import sign_element

from .test_amqp_broker_restart import queue_depth
from .test_bank_exchange import NOW, World, amqp, in_process  # noqa: F401  (fixtures)
from .test_store_contract import backend, pg_database, store  # noqa: F401
from .twisted_reactor import call, eventually, reactor_thread  # noqa: F401

P = f"{{{PAIN002_NS}}}"
TODAY = NOW.astimezone(TAIPEI).date()


def sealed(world: World, document: etree._Element, report_id: str, message_type: str = "pain.002.001.10", *,
           sender: str = BANK_NAME, receiver: str = GATEWAY_NAME, envelope_id: str | None = None) -> bytes:
    """``document`` under the bank's real signature, its MsgId set to ``report_id``, in an envelope naming
    ``sender``, ``receiver`` and ``envelope_id`` (default: the same id) — built without seal()'s own checks,
    as a confused bank's system would."""
    document = copy.deepcopy(document)
    message = next(document.iterchildren())
    message.find(f"{{{etree.QName(document).namespace}}}GrpHdr/{{{etree.QName(document).namespace}}}MsgId").text = \
        report_id
    envelope = envelope_element(document, message_id=envelope_id or report_id, message_type=message_type,
                                sender=sender, receiver=receiver, created_at=NOW)
    return etree.tostring(sign_element(envelope, world.bank.key, world.bank.cert, NOW), xml_declaration=True,
                          encoding="UTF-8")


def genuine_document(body: bytes) -> etree._Element:
    """The ISO document inside one of the simulated bank's own sealed reports."""
    return copy.deepcopy(etree.fromstring(body).find(".//{*}Document/{*}Document"))


def with_original_count(document: etree._Element, count: int) -> etree._Element:
    """A pain.002 that repeats the original message's transaction count (OrgnlNbOfTxs), here a wrong one."""
    document = copy.deepcopy(document)
    name = document.find(f"{P}CstmrPmtStsRpt/{P}OrgnlGrpInfAndSts/{P}OrgnlMsgNmId")
    node = etree.Element(P + "OrgnlNbOfTxs")
    node.text = str(count)
    name.addnext(node)
    return document


def hostile_reports(world: World, a, b, status_a: bytes) -> list[tuple[str, bytes, str]]:
    """(report id, signed bytes, the code it must be dead-lettered with), one per way of not being bound."""
    rows_a = world.store.payments_of_message(a.message_id)
    rows_b = world.store.payments_of_message(b.message_id)
    genuine = genuine_document(status_a)

    def status(original: str, rows, block: str | None = None) -> etree._Element:
        return build_pain002(message_id="X", created_at=NOW, original_message_id=original, group_status=None,
                             tx_statuses=[(r.end_to_end_id, "ACSC", None, None, r.amount, "FBX",
                                           block or r.payment_info_id) for r in rows])

    other_day = build_camt054(message_id="X", created_at=NOW, account=TAIPEI_TREASURY.account_number, entries=[
        (rows_b[0].end_to_end_id, rows_b[0].amount, "DBIT", TODAY, "FBY", None, None, a.message_id,
         rows_b[0].payment_info_id)])
    return [
        # 1. who it is for
        ("H-RECEIVER", sealed(world, genuine, "H-RECEIVER", receiver="NTPC-TREASURY-GATEWAY"),
         "bank-receiver-unexpected"),
        ("H-SENDER", sealed(world, genuine, "H-SENDER", sender="FUBON-012-9999"), "bank-sender-unexpected"),
        # 2. which id: the genuine document under two envelope ids that are not its own
        ("H-ENV-1", sealed(world, genuine, "H-DOC", envelope_id="H-ENV-1"), "bank-message-id-mismatch"),
        ("H-ENV-2", sealed(world, genuine, "H-DOC", envelope_id="H-ENV-2"), "bank-message-id-mismatch"),
        # 3. which message: a status about A listing B's lines (under A's block), about B listing A's lines,
        #    and a booking of B's line whose Refs name message A
        ("H-A-LISTS-B", sealed(world, status(a.message_id, rows_b[:2], rows_a[0].payment_info_id), "H-A-LISTS-B"),
         "bank-reference-unknown"),
        ("H-B-LISTS-A", sealed(world, status(b.message_id, rows_a[:1]), "H-B-LISTS-A"), "bank-reference-unknown"),
        ("H-BOOK-B-AS-A", sealed(world, other_day, "H-BOOK-B-AS-A", "camt.054.001.08"), "bank-reference-unknown"),
        # ... and a status repeating a count the message was not sent with
        ("H-COUNT", sealed(world, with_original_count(genuine, a.payment_count + 1), "H-COUNT"),
         "bank-original-mismatch"),
    ]


def audit_log(store) -> list:
    entries, after = [], 0
    while page := store.audit_entries(after_seq=after, limit=1000):
        entries += page
        after = page[-1].seq
    return entries


def snapshot(store) -> tuple:
    """Everything a report could change: lines with their facts, audit log, budgets, stored reports."""
    lines = sorted((r.end_to_end_id, r.state, r.booked_on, r.bank_reference, r.reason_code)
                   for m in store.bank_messages("out", limit=1000) for r in store.payments_of_message(m.message_id))
    return (lines, len(audit_log(store)), store.budget_balances(),
            [m.message_id for m in store.bank_messages("in", limit=1000)])


def assert_reconciled(store) -> None:
    result = reconcile(store.reconciliation_facts())  # what `vgw audit reconcile` runs
    assert result.ok, result.discrepancy


def dead_letters(transport) -> int:
    if isinstance(transport, InProcessBankTransport):
        return len([d for d in transport.dead if d.queue == transport.topology.reports_queue])
    return queue_depth(os.environ["VGW_TEST_AMQP_URL"], transport.topology.dead_letter_queue)


def publish(reactor, transport, report_id: str, body: bytes) -> None:
    call(reactor, transport.publish, report_id, REPORT_ROUTING, body, {"message-type": "report"})


def apply_one(reactor, world: World, report_id: str, body: bytes) -> None:
    """Publish one genuine report and wait until it is applied (so the next one comes after it)."""
    applied = world.intake.counts.reports
    publish(reactor, world.transport, report_id, body)
    eventually(reactor, lambda: world.intake.counts.reports == applied + 1, f"report {report_id} applied",
               timeout=60)


@pytest.mark.parametrize("transport_name", ["in_process", "amqp"])
def test_reports_not_bound_to_what_was_sent_are_dead_lettered_and_the_genuine_ones_applied_after(
        request, store, pki, reactor_thread, transport_name):
    transport = request.getfixturevalue(transport_name)
    world = World(store, pki, transport, return_rate=0.0, payments=40)
    call(reactor_thread, transport.consume, transport.topology.reports_queue, world.intake.handler)
    world.batcher.batch_all()
    a, b = store.bank_messages("out", limit=10)[:2]
    answer_a, answer_b = world.bank.answer(a.body), world.bank.answer(b.body)
    hostile = hostile_reports(world, a, b, answer_a.status[1])
    before = snapshot(store)
    for report_id, body, _code in hostile:
        publish(reactor_thread, transport, report_id, body)
    eventually(reactor_thread, lambda: len(world.dead) == len(hostile), "every hostile report refused", timeout=60)
    assert sorted(world.dead) == sorted(code for _, _, code in hostile)
    eventually(reactor_thread, lambda: dead_letters(transport) == len(hostile), "every one in the dead-letter queue",
               timeout=30)
    assert snapshot(store) == before, "a refused report changed something"
    assert world.intake.counts.reports == 0
    assert_reconciled(store)

    # The consumer keeps running: A's status report then its booking; B's booking then its status report.
    (a_notice_id, a_notice), = answer_a.notices
    (b_notice_id, b_notice), = answer_b.notices
    apply_one(reactor_thread, world, *answer_a.status)
    paid_a = store.payments_of_message(a.message_id)
    assert {r.state for r in paid_a} == {LineState.PAID} and {r.booked_on for r in paid_a} == {None}
    apply_one(reactor_thread, world, a_notice_id, a_notice)  # the booking fills in the date, moves no money
    apply_one(reactor_thread, world, b_notice_id, b_notice)
    apply_one(reactor_thread, world, *answer_b.status)
    for message in (a, b):
        rows = store.payments_of_message(message.message_id)
        assert {r.state for r in rows} == {LineState.PAID}
        assert {r.booked_on for r in rows} == {TODAY}, message.message_id  # equal in either order
        assert all(r.bank_reference for r in rows)
    statement = {line.end_to_end_id: line for agency in {r.agency for r in world.lines()}
                 for line in store.statement_lines(agency, TODAY - datetime.timedelta(days=1),
                                                   TODAY + datetime.timedelta(days=1))}
    assert {(line.booked_on, line.paid_on) for line in statement.values()} == {(TODAY, TODAY)}
    booking_events = [e.event for e in audit_log(store)
                      if e.event.action == "bank.report" and e.event.detail["report"] == a_notice_id]
    assert booking_events and all(e.detail.get("filled_in") for e in booking_events)
    assert_reconciled(store)

    # 4. a second booking of a booked line on another day is a conflict, and changes nothing
    row = store.payments_of_message(a.message_id)[0]
    again = build_camt054(message_id="X", created_at=NOW, account=TAIPEI_TREASURY.account_number, entries=[
        (row.end_to_end_id, row.amount, "DBIT", TODAY + datetime.timedelta(days=1), "FBZ", None, None, a.message_id,
         row.payment_info_id)])
    settled = snapshot(store)
    publish(reactor_thread, transport, "H-BOOKED-TWICE", sealed(world, again, "H-BOOKED-TWICE", "camt.054.001.08"))
    eventually(reactor_thread, lambda: len(world.dead) == len(hostile) + 1, "the second booking refused", timeout=60)
    assert world.dead[-1] == "bank-booking-conflict" and snapshot(store) == settled
    assert_reconciled(store)
