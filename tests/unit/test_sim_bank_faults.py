"""The simulated bank's injected faults: decided reproducibly by the seed, and acted on at the right moments
(on a ``Clock``, with a transport that records what was published: no reactor, no sleeping)."""

from __future__ import annotations

import dataclasses

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from simulators.bank import BankLink
from simulators.bank_faults import MALFORMED_KINDS, REORDER_HOLD_SECONDS, BankFaults
from tests.unit.payment_samples import payments
from tests.unit.sim_bank_samples import make_bank, read, transfer

RATES = BankFaults(seed=11, duplicate_rate=0.2, reorder_rate=0.3, drop_rate=0.25, delay_rate=0.1,
                   malformed_rate=0.15, down_rate=0.05, reject_file_rate=0.1)


def decisions(faults: BankFaults, n: int = 2_000) -> list[tuple]:
    return [(faults.drops(f"M{i}", 1), faults.reorders(f"M{i}", 1), faults.delays(f"M{i}", 1),
             faults.goes_down(f"M{i}", 1), faults.malformed(f"M{i}", 1), faults.rejects_file(f"M{i}"),
             faults.duplicates(f"R{i}", 1)) for i in range(n)]


def test_the_same_seed_decides_the_same_faults_and_another_seed_others():
    assert decisions(RATES) == decisions(dataclasses.replace(RATES))
    assert decisions(RATES) != decisions(dataclasses.replace(RATES, seed=12))


def test_each_fault_happens_at_about_its_rate():
    n = 20_000
    for name, decide in [("drop_rate", lambda f, i: f.drops(f"M{i}", 1)),
                         ("reorder_rate", lambda f, i: f.reorders(f"M{i}", 1)),
                         ("malformed_rate", lambda f, i: f.malformed(f"M{i}", 1) is not None),
                         ("reject_file_rate", lambda f, i: f.rejects_file(f"M{i}")),
                         ("duplicate_rate", lambda f, i: f.duplicates(f"R{i}", 1))]:
        share = sum(1 for i in range(n) if decide(RATES, i)) / n
        assert abs(share - getattr(RATES, name)) < 0.015, name
    assert {RATES.malformed(f"M{i}", 1) for i in range(2_000)} == {None, *MALFORMED_KINDS}


def test_no_rates_no_faults_and_a_rate_of_one_always():
    calm = BankFaults(seed=3)
    assert not calm.any and not any(any(d) for d in decisions(calm, 500))
    wild = BankFaults(drop_rate=1.0, reject_file_rate=1.0)
    assert wild.any and all(wild.drops(f"M{i}", a) and wild.rejects_file(f"M{i}") for i in range(100) for a in (1, 2))


def test_a_drop_is_decided_per_delivery_attempt_so_a_re_send_usually_gets_through_but_a_rejection_is_per_file():
    faults = BankFaults(seed=5, drop_rate=0.5, reject_file_rate=0.5)
    dropped = [f"M{i}" for i in range(4_000) if faults.drops(f"M{i}", 1)]
    again = sum(1 for m in dropped if faults.drops(m, 2)) / len(dropped)
    assert 0.45 < again < 0.55  # independent of the first attempt
    assert all(faults.rejects_file(m) == faults.rejects_file(m) for m in dropped)


@pytest.mark.parametrize("bad", [{"drop_rate": -0.1}, {"malformed_rate": 1.01}, {"delay_seconds": -1}])
def test_a_rate_outside_zero_to_one_or_negative_seconds_is_a_mistake(bad):
    with pytest.raises(ValueError):
        BankFaults(**bad)


# --- the bank acting on them ------------------------------------------------------------------------------------

class Wire:
    """A transport that confirms every publish at once and records it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, message_id, routing, body, headers):
        self.sent.append((message_id, body))
        return defer.succeed(None)

    def consume(self, queue, handler):
        self.handler = handler


def link_for(pki, **options) -> tuple[BankLink, Wire, Clock]:
    bank = make_bank(pki, **options)
    wire, clock = Wire(), Clock()
    bank.link = BankLink(bank, wire, clock, run_blocking=lambda f, *args: defer.maybeDeferred(f, *args))
    return bank.link, wire, clock


def deliver(link: BankLink, message: tuple[str, bytes]) -> list:
    verdicts: list = []
    link.handle(message[1], {}, message[0]).addCallback(verdicts.append)
    return verdicts


def ids(wire: Wire) -> list[str]:
    return [message_id[:2] for message_id, _ in wire.sent]


def test_a_dropped_answer_is_acknowledged_and_the_next_delivery_of_the_message_is_answered(pki):
    link, wire, _ = link_for(pki, return_rate=0.0, faults=BankFaults(drop_rate=1.0))
    message = transfer(pki, payments(3))
    assert deliver(link, message) == ["ack"] and wire.sent == []
    assert link.bank.counts.dropped_answers == 1 and len(link.bank.booked) == 3
    link.bank.faults = BankFaults()  # the re-send gets through
    assert deliver(link, message) == ["ack"] and ids(wire) == ["P2", "C5"]
    assert link.deliveries[message[0]] == 2 and link.bank.counts.repeated_messages == 1
    assert max(link.bank.booked.values()) == 1


def test_reordered_reports_wait_for_the_next_messages_and_never_longer_than_the_hold(pki):
    link, wire, clock = link_for(pki, return_rate=0.0, faults=BankFaults(reorder_rate=1.0))
    first, second = transfer(pki, payments(2)), transfer(pki, payments(4)[2:])
    held = deliver(link, first)
    assert held == [] and wire.sent == []  # held back, and the transfer not acknowledged yet
    clock.advance(REORDER_HOLD_SECONDS)
    assert held == ["ack"] and ids(wire) == ["C5", "P2"]  # the notification before the status report
    wire.sent.clear()
    third = deliver(link, second)  # held again, until the next message (not reordered) has its reports out
    link.bank.faults = BankFaults()
    fourth = deliver(link, transfer(pki, payments(6)[4:]))
    assert third == fourth == ["ack"]
    assert [read(pki, body).message_type for _, body in wire.sent] == ["pain.002.001.10", "camt.054.001.08",
                                                                       "camt.054.001.08", "pain.002.001.10"]
    assert link.idle and link.bank.counts.reordered_messages == 2


def test_delayed_reports_go_out_after_the_delay(pki):
    link, wire, clock = link_for(pki, faults=BankFaults(delay_rate=1.0, delay_seconds=3.0))
    verdict = deliver(link, transfer(pki, payments(2)))
    clock.advance(2.9)
    assert verdict == [] and wire.sent == []
    clock.advance(0.1)
    assert verdict == ["ack"] and len(wire.sent) >= 1 and link.bank.counts.delayed_messages == 1


def test_a_duplicated_report_is_published_twice_with_the_same_id_and_bytes(pki):
    link, wire, _ = link_for(pki, return_rate=0.0, faults=BankFaults(duplicate_rate=1.0))
    deliver(link, transfer(pki, payments(2)))
    assert len(wire.sent) == 4 and wire.sent[0] == wire.sent[1] and wire.sent[2] == wire.sent[3]
    assert link.bank.counts.duplicated_reports == 2 and link.bank.counts.published == 4


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_a_malformed_report_goes_out_under_a_fresh_id_and_the_gateway_cannot_read_it(pki, kind):
    from gateway.errors import Refusal

    message = transfer(pki, payments(2))
    faults = next(f for f in (BankFaults(seed=seed, malformed_rate=1.0) for seed in range(100))
                  if f.malformed(message[0], 1) == kind)  # the kind is the delivery's own draw: pick a seed for it
    link, wire, _ = link_for(pki, faults=faults)
    deliver(link, message)
    real = {mid for mid, _ in link.bank.answer(message[1]).reports}
    [(bad_id, bad)] = [(mid, body) for mid, body in wire.sent if mid not in real]
    assert link.malformed_ids == [bad_id] and link.bank.counts.malformed_reports == 1
    with pytest.raises(Refusal) as refused:
        read(pki, bad)
    assert refused.value.code.startswith("xml-") if kind == "truncated" else refused.value.code.startswith("signature")


def test_while_the_bank_is_down_deliveries_wait_unanswered_and_are_processed_in_order_once_it_is_up(pki):
    link, wire, clock = link_for(pki, return_rate=0.0, faults=BankFaults(down_rate=1.0, down_seconds=5.0))
    messages = [transfer(pki, payments(2 * (i + 1))[2 * i:]) for i in range(3)]
    verdicts = [deliver(link, messages[0])]
    link.bank.faults = BankFaults()  # down once
    verdicts += [deliver(link, m) for m in messages[1:]]
    assert link.down and verdicts == [[], [], []] and wire.sent == [] and not link.bank.booked
    clock.advance(5.0)
    assert verdicts == [["ack"]] * 3 and not link.down and link.idle
    answered = [read(pki, body).outcomes[0].original_message_id for _, body in wire.sent
                if read(pki, body).message_type == "pain.002.001.10"]
    assert answered == [m[0] for m in messages]
    assert (link.bank.counts.downtimes, link.bank.counts.held_while_down) == (1, 3)


def test_with_a_settlement_delay_the_booking_follows_the_status_report_after_the_delay(pki):
    link, wire, clock = link_for(pki, return_rate=0.0, settlement_delay=30.0)
    message = transfer(pki, payments(3))
    assert deliver(link, message) == ["ack"] and ids(wire) == ["P2"] and not link.idle
    clock.advance(10)
    assert deliver(link, message) == ["ack"] and ids(wire) == ["P2", "P2"]  # a re-send: the same status again
    clock.advance(20)
    assert ids(wire) == ["P2", "P2", "C5"] and link.idle  # one booking notice, when it was due
