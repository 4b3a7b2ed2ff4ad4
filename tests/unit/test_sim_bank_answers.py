"""What the simulated bank answers a transfer message: duplicates (AM05), whole files rejected (AM10), a
settlement in process (ACSP) before the booking, and the same answer again for a message it has seen."""

from __future__ import annotations

from gateway.bank.pain001 import NS as PAIN001_NS
from gateway.bank.payments import OutcomeKind
from simulators.bank_faults import BankFaults
from tests.unit.payment_samples import payments
from tests.unit.sim_bank_samples import make_bank, read, statuses, transfer


def test_an_end_to_end_id_booked_from_another_message_is_rejected_with_am05_and_never_booked_twice(pki):
    bank = make_bank(pki, return_rate=0.0)
    sent = payments(8)
    first, second = transfer(pki, sent[:5]), transfer(pki, sent[3:])
    assert first[0] != second[0]
    bank.receive(first[1])
    status, notice = bank.receive(second[1])
    said = statuses(pki, status[1])
    assert [said[p.end_to_end_id] for p in sent[3:5]] == [("rejected", "AM05")] * 2
    assert [said[p.end_to_end_id] for p in sent[5:]] == [("paid", None)] * 3
    assert all(o.end_to_end_id for o in read(pki, status[1]).outcomes)  # PART: no group-wide statement
    assert {o.end_to_end_id for o in read(pki, notice[1]).outcomes} == {p.end_to_end_id for p in sent[5:]}
    assert bank.counts.duplicate_payments == 2 and max(bank.booked.values()) == 1 and len(bank.booked) == 8
    assert (bank.counts.paid, bank.counts.returned) == (8, 0)


def test_a_message_seen_before_is_answered_again_with_the_same_reports_and_books_nothing(pki):
    bank = make_bank(pki, return_rate=0.5)
    message = transfer(pki, payments(6))[1]
    answer = bank.answer(message)
    again = bank.answer(message)
    assert again.repeated and not answer.repeated and again.reports == answer.reports
    assert (bank.counts.messages, bank.counts.repeated_messages, bank.counts.duplicate_payments) == (1, 1, 0)
    assert bank.counts.reports == len(answer.reports)


def test_an_injected_whole_file_rejection_returns_every_line_with_am10_and_books_nothing(pki):
    bank = make_bank(pki, return_rate=0.0, faults=BankFaults(reject_file_rate=1.0))
    message_id, message = transfer(pki, payments(4))
    answer = bank.answer(message)
    assert answer.notices == () and not bank.booked
    report = read(pki, answer.status[1])
    [outcome] = report.outcomes  # one group-level statement, no transaction details
    assert (outcome.kind, outcome.reason_code, outcome.original_message_id, outcome.end_to_end_id) == \
        (OutcomeKind.REJECTED, "AM10", message_id, None)
    assert bank.answer(message).reports == answer.reports  # a re-send is rejected again, the same way
    assert (bank.counts.rejected_files, bank.counts.returned, bank.counts.paid) == (1, 4, 0)


def test_a_file_whose_control_sum_is_wrong_is_rejected_with_am10_not_dead_lettered(pki):
    def wrong_sum(document):
        document.find(f"{{{PAIN001_NS}}}CstmrCdtTrfInitn/{{{PAIN001_NS}}}GrpHdr/{{{PAIN001_NS}}}CtrlSum").text = "1"

    bank = make_bank(pki)
    message_id, message = transfer(pki, payments(3), edit=wrong_sum)
    [outcome] = read(pki, bank.answer(message).status[1]).outcomes
    assert (outcome.kind, outcome.reason_code, outcome.original_message_id) == (OutcomeKind.REJECTED, "AM10",
                                                                                 message_id)
    assert not bank.booked and bank.counts.refused_messages == 0


def test_with_a_settlement_delay_the_status_report_says_accepted_and_the_booking_says_paid(pki):
    bank = make_bank(pki, seed=3, return_rate=0.4, settlement_delay=5.0)
    sent = payments(20)
    answer = bank.answer(transfer(pki, sent)[1])
    said = statuses(pki, answer.status[1])
    good = {e2e for e2e, (kind, _) in said.items() if kind == "accepted"}
    bad = {e2e for e2e, (kind, _) in said.items() if kind == "rejected"}
    assert good and bad and good | bad == {p.end_to_end_id for p in sent}
    assert {said[e2e][1] for e2e in bad} <= {"AC01", "AC04", "BE01"}
    [notice] = answer.notices
    booked = read(pki, notice[1]).outcomes
    assert {o.end_to_end_id for o in booked} == good and {o.kind for o in booked} == {OutcomeKind.PAID}


def test_without_a_settlement_delay_the_status_report_says_settled(pki):
    bank = make_bank(pki, return_rate=0.0)
    answer = bank.answer(transfer(pki, payments(5))[1])
    report = read(pki, answer.status[1])
    assert {o.kind for o in report.outcomes} == {OutcomeKind.PAID}  # ACSC, and the group ACSC too
    assert len(answer.notices) == 1


def test_every_status_and_booking_names_the_message_and_block_its_payment_was_sent_in(pki):
    """What the gateway binds a report by (gateway/bank/binding.py): the simulated bank echoes the real
    OrgnlPmtInfId (not the MsgId where the block id belongs) and names message and block in each booking."""
    from gateway.bank.pain001 import read_pain001
    from gateway.xmlsec.parsing import parse_untrusted

    bank = make_bank(pki, return_rate=0.5)
    sent = payments(12)
    message_id, message = transfer(pki, sent)
    blocks = {tx.end_to_end_id: tx.payment_info_id
              for tx in read_pain001(parse_untrusted(message).find(f".//{{{PAIN001_NS}}}Document"))}
    assert len(set(blocks.values())) >= 1 and message_id not in blocks.values()
    status, notice = bank.receive(message)
    said, booked = read(pki, status[1]), read(pki, notice[1])
    details = [o for o in said.outcomes if o.end_to_end_id]
    assert details and {(o.original_message_id, o.original_payment_info_id) for o in details} <= \
        {(message_id, block) for block in blocks.values()}
    assert all(o.original_payment_info_id == blocks[o.end_to_end_id] for o in details)
    assert said.original.message_id == message_id and {b.payment_info_id for b in said.original.blocks} <= \
        set(blocks.values())
    assert booked.outcomes and all((o.original_message_id, o.original_payment_info_id) ==
                                   (message_id, blocks[o.end_to_end_id]) for o in booked.outcomes)
