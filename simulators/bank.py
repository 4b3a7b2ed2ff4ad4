"""The simulated treasury agent bank (代庫銀行): books the gateway's transfers, answers with signed reports.

It talks to the gateway only through a bank transport (RabbitMQ, or the in-process one of the embedded
default), exactly as the real bank would: it verifies the gateway's signature (pinned certificate) and the
official pain.001 schema, books each EndToEndId at most once, and answers every transfer message with a
signed pain.002 status report and, for what it paid, a camt.054 debit notification. Both name what they
answer as a real bank's must: the transfer message (OrgnlMsgId; the booking's Refs/MsgId), the payment block
each transaction was sent in (OrgnlPmtInfId; Refs/PmtInfId), the gateway as receiver, and the Taipei
business day as booking date.

What a tester can make it do, each reproducible with ``--seed``:

- **returns (退匯) by account**: a payee account ledger (:mod:`simulators.bank_accounts`) decides which creditor
  accounts are wrong (AC01), closed (AC04) or held by someone else than the payee named (BE01), so the same
  people are returned every month and a corrected account is a fresh draw;
- **settlement delay**: with ``settlement_delay`` > 0 the pain.002 says ACSP (accepted, settlement in process)
  at once and the camt.054 booking follows that many seconds later;
- **duplicates**: an EndToEndId the bank booked in another transfer message is rejected with AM05 and never
  booked twice; a transfer message seen before (the gateway re-sent it) gets the very same reports again;
- **faults** (:mod:`simulators.bank_faults`): duplicated, reordered, dropped, delayed and malformed reports,
  the bank down for a while, whole files rejected (AM10).

Every fault injected is counted in :class:`BankCounts`. ``booked`` counts bookings per EndToEndId: the crash
tests read it to prove that nothing reached the bank twice as a payment, whatever the gateway re-sent.

Two layers: :meth:`SimulatedBank.answer` (blocking, thread-safe) decides what the bank answers a transfer
message, and is what tests call directly; :class:`BankLink` (reactor thread, made by
:meth:`SimulatedBank.attach`) decides when, if and how often the answers go out over a transport.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from lxml import etree
from twisted.internet import defer, task
from twisted.internet.threads import deferToThread

from adapters.bank.transport import ACK, DEAD, RETRY
from gateway.bank.envelope import open_sealed, seal
from gateway.bank.pain001 import read_pain001
from gateway.bank.report_writing import build_camt054, build_pain002
from gateway.bank.reports import PAIN002_NS
from gateway.bank.settlement import BANK_NAME, GATEWAY_NAME, REPORT_ROUTING, TRANSFER_TYPE
from gateway.business_time import TAIPEI
from gateway.errors import Refusal
from gateway.xmlsec.signing import SignerKey
from simulators.bank_accounts import RETURN_REASONS, AccountLedger, PayeeAccount
from simulators.bank_faults import REORDER_HOLD_SECONDS, BankFaults

__all__ = ["RETURN_REASONS", "Answer", "BankCounts", "BankLink", "SimulatedBank", "add_bank_arguments",
           "bank_from_args"]

DUPLICATE = "AM05"
"""Status reason of a payment whose EndToEndId the bank already booked from another transfer message."""
FILE_REJECTIONS = {"control-total-mismatch": "AM10", "line-count-mismatch": "AM18"}
"""Status reason of a whole transfer message the bank cannot book, by what reading it found; anything else
unreadable in a correctly signed message is FF01 (invalid file format)."""
INJECTED_REJECTION = "AM10"
"""The status reason of an injected whole-file rejection (``reject_file_rate``): control sum invalid."""
NOTICE_RETRY_SECONDS = 1.0
NOTICE_ATTEMPTS = 120
"""A delayed camt.054 the transport did not take is published again every second, for up to two minutes
(a broker restart), then given up: the bank simulator keeps nothing across its own restarts either."""


@dataclass
class BankCounts:
    """What the bank did since it started, for tests and ``vgw sim bank``'s exit line."""

    messages: int = 0
    """Transfer messages answered for the first time."""
    repeated_messages: int = 0
    """Transfer messages seen before (same MsgId) and answered again from memory."""
    refused_messages: int = 0
    """Deliveries whose envelope, schema or signature failed: dead-lettered, never answered."""
    duplicate_payments: int = 0
    """Payments rejected with AM05: their EndToEndId was booked from another transfer message."""
    paid: int = 0
    returned: int = 0
    """Payments answered RJCT for their account (AC01, AC04, BE01) or with their whole file (AM10, AM18, FF01)."""
    rejected_files: int = 0
    """Transfer messages rejected as a whole (group status RJCT), injected or not."""
    reports: int = 0
    """Distinct reports made (a repeat answer makes none)."""
    published: int = 0
    """Report publications the transport confirmed: repeats, duplicates and malformed ones included, so a test
    knows when the gateway has seen everything (its handled reports, repeats and dead letters add up to it)."""
    # injected faults (simulators/bank_faults.py)
    duplicated_reports: int = 0
    reordered_messages: int = 0
    dropped_answers: int = 0
    delayed_messages: int = 0
    malformed_reports: int = 0
    downtimes: int = 0
    held_while_down: int = 0
    """Deliveries that arrived while the bank was down (or catching up) and waited for it."""


@dataclass(frozen=True)
class Answer:
    """The bank's answer to one transfer message: the pain.002 and, for what it paid, the camt.054
    notifications, each as (message id, signed bytes). ``repeated``: the message was seen before, and these are
    the reports it got then."""

    transfer_id: str
    status: tuple[str, bytes]
    notices: tuple[tuple[str, bytes], ...] = ()
    repeated: bool = False

    @property
    def reports(self) -> list[tuple[str, bytes]]:
        """Every report, the status report first."""
        return [self.status, *self.notices]


@dataclass
class SimulatedBank:
    gateway_cert: x509.Certificate
    key: SignerKey
    cert: x509.Certificate
    clock: Callable[[], datetime.datetime]
    seed: int = 0
    return_rate: float = 0.02
    """The share of payee accounts that are bad (each payment into one is returned)."""
    notify: bool = True
    """Also send camt.054 debit notifications for what was paid."""
    ledger: object = None
    """A text file: one line per booking (EndToEndId, amount), for outside checks."""
    settlement_delay: float = 0.0
    """Seconds between the pain.002 (ACSP) and the camt.054 booking; 0: pain.002 ACSC and camt.054 at once."""
    faults: BankFaults = field(default_factory=BankFaults)
    booked: Counter = field(default_factory=Counter)
    counts: BankCounts = field(default_factory=BankCounts)
    payees: dict = field(default_factory=dict)
    """EndToEndId → the :class:`PayeeAccount` its transfer message named (what :meth:`returns` looks up)."""
    accounts: AccountLedger = field(init=False)
    link: BankLink | None = field(default=None, init=False)
    """The transport side, once :meth:`attach` ran."""
    _answers: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _serial: int = 0
    _run: str = field(default_factory=lambda: uuid.uuid4().hex[:6].upper())

    def __post_init__(self) -> None:
        self.accounts = AccountLedger(self.seed, self.return_rate)
        if self.settlement_delay < 0:
            raise ValueError(f"a settlement delay is not negative, not {self.settlement_delay!r}")

    def returns(self, end_to_end_id: str) -> str | None:
        """The reason this payment is returned, or None: the standing of the payee account its transfer message
        named, in the account ledger. Tests replace it (``bank.returns = lambda e2e: ...``) to pick by hand."""
        account = self.payees.get(end_to_end_id)
        return None if account is None else self.accounts.reason(account)

    def _next_id(self, prefix: str) -> str:
        """A message or booking reference unique to this bank run: a real bank never reuses one, and a
        restarted simulator must not either (the gateway would see a known report id with new content)."""
        self._serial += 1
        return f"{prefix}{self.clock().strftime('%Y%m%d')}{self._run}{self._serial:08d}"

    def receive(self, body: bytes) -> list[tuple[str, bytes]]:
        """Book one transfer message; the (message id, signed report) pairs to send back, the pain.002 first
        (see :meth:`answer`). Timing and faults are the transport side's (:class:`BankLink`), not this."""
        return self.answer(body).reports

    def answer(self, body: bytes) -> Answer:
        """Book one transfer message and answer it. A message seen before gets the same reports again (the
        gateway re-sent it after a crash); nothing is booked twice. Raises Refusal when the message is not a
        correctly signed transfer message (it is then dead-lettered unanswered: its MsgId cannot be trusted)."""
        now = self.clock()
        try:
            sealed = open_sealed(body, signer_cert=self.gateway_cert, allowed_types=frozenset({TRANSFER_TYPE}),
                                 sender=GATEWAY_NAME, receiver=BANK_NAME, now=now)
        except Refusal:
            self.counts.refused_messages += 1
            raise
        with self._lock:
            stored = self._answers.get(sealed.message_id)
            if stored is not None:
                self.counts.repeated_messages += 1
                return replace(stored, repeated=True)
            self.counts.messages += 1
            try:
                transfers = read_pain001(sealed.document)
            except Refusal as refusal:  # signed by the gateway, but not a file the bank can book
                answer = self._file_rejected(sealed.message_id, FILE_REJECTIONS.get(refusal.code, "FF01"),
                                             refusal.message, now)
            else:
                if self.faults.rejects_file(sealed.message_id):
                    self.counts.returned += len(transfers)
                    answer = self._file_rejected(sealed.message_id, INJECTED_REJECTION,
                                                 "control sum invalid (simulated whole-file rejection)", now)
                else:
                    answer = self._book(sealed.message_id, transfers, now)
            self.counts.reports += len(answer.reports)
            self._answers[sealed.message_id] = answer
            if self.ledger is not None:
                self.ledger.flush()
            return answer

    def _book(self, message_id: str, transfers, now: datetime.datetime) -> Answer:
        """Each transaction paid, returned for its account, or rejected as a duplicate (under the lock)."""
        settled = "ACSP" if self.settlement_delay > 0 else "ACSC"
        booked_on = now.astimezone(TAIPEI).date()  # the bank's business day is Taipei's
        statuses, entries = [], []
        for tx in transfers:
            e2e = tx.end_to_end_id
            reference = self._next_id("FB")
            if self.booked[e2e]:
                self.counts.duplicate_payments += 1
                statuses.append((e2e, "RJCT", DUPLICATE, "duplicate payment: this EndToEndId was booked from an "
                                 "earlier transfer message", tx.amount, reference, tx.payment_info_id))
                continue
            self.payees[e2e] = PayeeAccount.of(tx)
            reason = self.returns(e2e)
            if reason:
                self.counts.returned += 1
                statuses.append((e2e, "RJCT", reason, None, tx.amount, reference, tx.payment_info_id))
                continue
            self.booked[e2e] += 1
            if self.ledger is not None:
                self.ledger.write(f"{e2e} {tx.amount}\n")
            self.counts.paid += 1
            statuses.append((e2e, settled, None, None, tx.amount, reference, tx.payment_info_id))
            entries.append((e2e, tx.amount, "DBIT", booked_on, reference, None, None, message_id, tx.payment_info_id))
        said = {status[1] for status in statuses}
        group = settled if said == {settled} else "RJCT" if said == {"RJCT"} else "PART"
        status_id = self._next_id("P2")
        status = self._sealed("pain.002.001.10", build_pain002(
            message_id=status_id, created_at=now, original_message_id=message_id, group_status=group,
            tx_statuses=statuses), status_id, now)
        notices = ()
        if self.notify and entries:
            notice_id = self._next_id("C5")
            notices = (self._sealed("camt.054.001.08", build_camt054(
                message_id=notice_id, created_at=now, account=transfers[0].debtor_account, entries=entries),
                notice_id, now),)
        return Answer(message_id, status, notices)

    def _file_rejected(self, message_id: str, code: str, why: str, now: datetime.datetime) -> Answer:
        """The whole message rejected: group status RJCT with ``code``, no transaction status, nothing booked
        (the gateway returns every line of the message with ``code``)."""
        self.counts.rejected_files += 1
        status_id = self._next_id("P2")
        return Answer(message_id, self._sealed("pain.002.001.10", build_pain002(
            message_id=status_id, created_at=now, original_message_id=message_id, group_status="RJCT",
            group_reason=code, group_reason_text=why), status_id, now))

    def _sealed(self, message_type: str, document, message_id: str, now: datetime.datetime) -> tuple[str, bytes]:
        return message_id, seal(document, message_id=message_id, message_type=message_type, sender=BANK_NAME,
                                receiver=GATEWAY_NAME, key=self.key, cert=self.cert, created_at=now)

    def malformed_report(self, answer: Answer, kind: str) -> tuple[str, bytes]:
        """A report the gateway must never apply, under a fresh message id: the answer's pain.002 sealed again
        and then cut in half (``truncated``) or changed after signing (``bad-signature``: its MsgId no longer
        the one signed, the XML and schema still valid)."""
        with self._lock:
            report_id = self._next_id("P2")
        document = etree.fromstring(answer.status[1]).find(f".//{{{PAIN002_NS}}}Document")
        document.find(f"{{{PAIN002_NS}}}CstmrPmtStsRpt/{{{PAIN002_NS}}}GrpHdr/{{{PAIN002_NS}}}MsgId").text = report_id
        body = self._sealed("pain.002.001.10", document, report_id, self.clock())[1]
        if kind == "truncated":
            return report_id, body[:len(body) // 2]
        signed, changed = f"<MsgId>{report_id}</MsgId>".encode(), f"<MsgId>{report_id}X</MsgId>".encode()
        if body.count(signed) != 1:
            raise AssertionError(f"the sealed report does not hold its MsgId {report_id} once")
        return report_id, body.replace(signed, changed)

    def attach(self, transport, transfers_queue: str, *, reactor=None) -> BankLink:
        """Consume transfer messages from ``transfers_queue`` of ``transport`` (any
        :class:`adapters.bank.transport.IBankTransport`: RabbitMQ or in-process) and publish the reports back
        (routing ``reports``) on ``reactor`` (default: the transport's, else the global one). Call it in the
        reactor thread. A transfer message is acknowledged only after its reports were confirmed (except a
        settlement-delayed camt.054, which follows on its own, and a dropped answer)."""
        if reactor is None:
            reactor = getattr(transport, "reactor", None)
        if reactor is None:
            from twisted.internet import reactor
        self.link = BankLink(self, transport, reactor)
        transport.consume(transfers_queue, self.link.handle)
        return self.link


class BankLink:
    """The bank's side of the transport: when, whether and how often its answers go out (settlement delay and
    the faults of :class:`BankFaults`). Everything here runs in the reactor thread; the booking itself runs in
    the thread pool (:meth:`SimulatedBank.answer`). Nothing sleeps: waits are Deferreds fired by the reactor."""

    def __init__(self, bank: SimulatedBank, transport, reactor, *, run_blocking=deferToThread) -> None:
        self.bank = bank
        self.transport = transport
        self.reactor = reactor
        self.run_blocking = run_blocking
        """``run_blocking(function, *args)`` → Deferred: how the booking and sealing leave the reactor thread
        (the thread pool; a unit test on a ``Clock`` runs them inline)."""
        self.deliveries: Counter = Counter()
        """Deliveries per transfer MsgId: the attempt number a fault is decided for."""
        self.malformed_ids: list[str] = []
        """Message ids of the malformed reports published, for a test to find them dead-lettered."""
        self._busy = 0
        self._down = False
        self._draining = False
        self._waiting: collections.deque = collections.deque()  # deliveries held while down, in arrival order
        self._held: list = []  # (Deferred, DelayedCall) of reordered answers waiting for the next one
        self._calls: set = set()  # scheduled publications and wake-ups
        self._settles_at: dict[str, float] = {}  # transfer MsgId -> reactor time its camt.054 is due
        self._notifying: set[str] = set()  # transfer MsgIds whose camt.054 is scheduled or being published

    @property
    def idle(self) -> bool:
        """Nothing in hand, held, waiting or scheduled: every answer the bank will send is out."""
        return self._busy == 0 and not self._calls and not self._held and not self._waiting

    @property
    def down(self) -> bool:
        return self._down

    def cancel_pending(self) -> None:
        """Cancel every scheduled publication (shutting down); held answers are released now."""
        for call in list(self._calls):
            if call.active():
                call.cancel()
        self._calls.clear()
        self._release_held()

    def _later(self, seconds: float, function, *args) -> None:
        def run():
            self._calls.discard(call)
            function(*args)
        call = self.reactor.callLater(seconds, run)
        self._calls.add(call)

    def _sleep(self, seconds: float):
        return task.deferLater(self.reactor, seconds, lambda: None)

    # --- one delivery ---

    def handle(self, body: bytes, headers: dict, message_id: str | None):
        """The transport consumer's handler: book the message, publish its answer; ``ack``, ``dead`` (not a
        correctly signed transfer message) or ``retry`` (the reports did not get out)."""
        self._busy += 1
        d = defer.ensureDeferred(self._handle(body, message_id))

        def done(result):
            self._busy -= 1
            return result
        return d.addBoth(done)

    async def _handle(self, body: bytes, message_id: str | None) -> str:
        key = message_id or hashlib.sha256(body).hexdigest()
        self.deliveries[key] += 1
        attempt = self.deliveries[key]
        faults, counts = self.bank.faults, self.bank.counts
        gated = self._down or self._draining or bool(self._waiting)
        if not gated and faults.goes_down(key, attempt):
            counts.downtimes += 1
            self._down = True
            self._later(faults.down_seconds, self._up)
            gated = True
        if gated:
            counts.held_while_down += 1
            await self._turn()
        try:
            answer = await self.run_blocking(self.bank.answer, body)
        except Refusal:
            return DEAD
        finally:
            if gated:  # the next one in a later turn: this answer goes out first
                self.reactor.callLater(0, self._next_turn)
        return await self._send(answer, key, attempt)

    # --- down: deliveries wait in arrival order, and are processed one by one once the bank is back ---

    def _turn(self):
        d = defer.Deferred()
        self._waiting.append(d)
        return d

    def _up(self) -> None:
        self._down = False
        self._next_turn()

    def _next_turn(self) -> None:
        if self._down:
            return
        self._draining = bool(self._waiting)
        if self._waiting:
            self._waiting.popleft().callback(None)

    # --- publishing ---

    async def _send(self, answer: Answer, key: str, attempt: int) -> str:
        faults, counts = self.bank.faults, self.bank.counts
        if faults.drops(key, attempt):
            counts.dropped_answers += 1
            return ACK  # processed, acknowledged, and the answer lost
        now = [answer.status]
        later = list(answer.notices)
        if self.bank.settlement_delay <= 0:
            now, later = now + later, []
        held = faults.reorders(key, attempt)
        if held:
            counts.reordered_messages += 1
            now.reverse()
        if faults.delays(key, attempt):
            counts.delayed_messages += 1
            await self._sleep(faults.delay_seconds)
        if held:
            await self._hold()
        publishes = [self._publish(report_id, report, attempt) for report_id, report in now]
        if not held:
            self._release_held()  # what earlier messages held back goes out after these
        kind = faults.malformed(key, attempt)
        if kind is not None:
            bad_id, bad = await self.run_blocking(self.bank.malformed_report, answer, kind)
            counts.malformed_reports += 1
            self.malformed_ids.append(bad_id)
            publishes.append(self._publish_once(bad_id, bad))
        try:
            await defer.gatherResults([d for group in publishes for d in group], consumeErrors=True)
        except defer.FirstError:
            # the reports did not get out (broker gone, or stopping): put the transfer back; it is booked
            # already, so the next delivery answers it from memory with the same reports
            return RETRY
        if later and answer.transfer_id not in self._notifying:
            due = self._settles_at.setdefault(answer.transfer_id, self.reactor.seconds() + self.bank.settlement_delay)
            self._notifying.add(answer.transfer_id)  # a re-send before it is due adds no second notice
            self._later(max(0.0, due - self.reactor.seconds()), self._notify, answer.transfer_id, later, attempt, 1)
        return ACK

    def _publish(self, report_id: str, report: bytes, attempt: int) -> list:
        """Publish one report, twice when the duplicate fault says so; the publishes' Deferreds."""
        sent = self._publish_once(report_id, report)
        if self.bank.faults.duplicates(report_id, attempt):
            self.bank.counts.duplicated_reports += 1
            sent += self._publish_once(report_id, report)
        return sent

    def _publish_once(self, report_id: str, report: bytes) -> list:
        d = self.transport.publish(report_id, REPORT_ROUTING, report, {"message-type": "report"})

        def confirmed(_):
            self.bank.counts.published += 1
        return [d.addCallback(confirmed)]

    def _hold(self):
        """A Deferred that fires when the next message's reports went out, or after REORDER_HOLD_SECONDS."""
        d = defer.Deferred()

        def expire():
            self._calls.discard(call)
            if entry in self._held:
                self._held.remove(entry)
                d.callback(None)
        call = self.reactor.callLater(REORDER_HOLD_SECONDS, expire)
        self._calls.add(call)
        entry = (d, call)
        self._held.append(entry)
        return d

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for d, call in held:
            self._calls.discard(call)
            if call.active():
                call.cancel()
            d.callback(None)

    def _notify(self, transfer_id: str, reports: list[tuple[str, bytes]], attempt: int, tries: int) -> None:
        """Publish the settlement-delayed camt.054 of ``transfer_id``; again a second later if the transport
        failed. Once out, a later re-send of the transfer message gets it again (at once: it is due)."""
        publishes = [d for report_id, report in reports for d in self._publish(report_id, report, attempt)]
        self._busy += 1

        def settled(results):
            self._busy -= 1
            if not all(ok for ok, _ in results) and tries < NOTICE_ATTEMPTS:
                self._later(NOTICE_RETRY_SECONDS, self._notify, transfer_id, reports, attempt, tries + 1)
            else:
                self._notifying.discard(transfer_id)
        defer.DeferredList(publishes, consumeErrors=True).addCallback(settled)


# --- options shared by `vgw sim bank` and `vgw sim serve` -------------------------------------------------------

def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share in [0, 1]")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds (>= 0)")
    return value


def add_bank_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulated bank's own options — its account ledger, settlement delay and faults — for every command
    that runs it (``vgw sim bank`` over RabbitMQ, ``vgw sim serve`` in process), read back by
    :func:`bank_from_args`. The link options (broker, keys) are the command's own."""
    group = parser.add_argument_group("simulated bank")
    group.add_argument("--seed", type=int, default=0, help="seed of the account ledger and of every fault (default 0)")
    group.add_argument("--return-rate", type=_share, default=0.02, metavar="R",
                       help="share of payee accounts that are bad: wrong number AC01, closed AC04, name/ID "
                            "mismatch BE01 (default 0.02)")
    group.add_argument("--settlement-delay", type=_seconds, default=0.0, metavar="SECONDS",
                       help="answer pain.002 ACSP at once and send the camt.054 booking this much later "
                            "(default 0: ACSC and camt.054 at once)")
    group.add_argument("--no-notifications", action="store_true", help="send pain.002 only, no camt.054")
    group.add_argument("--ledger", metavar="FILE", help="append one line per booking (EndToEndId amount)")
    faults = parser.add_argument_group("simulated bank faults (each a share in [0, 1], decided by --seed)")
    faults.add_argument("--duplicate-rate", type=_share, default=0.0, metavar="R",
                        help="publish a report twice (same id, same bytes)")
    faults.add_argument("--reorder-rate", type=_share, default=0.0, metavar="R",
                        help="publish a message's reports in reverse order, after the next message's (held at "
                             f"most {REORDER_HOLD_SECONDS:g} s)")
    faults.add_argument("--drop-rate", type=_share, default=0.0, metavar="R",
                        help="lose the answer to a delivery (the transfer message is booked and acknowledged); "
                             "decided per delivery attempt")
    faults.add_argument("--delay-rate", type=_share, default=0.0, metavar="R",
                        help="publish a message's reports --delay-seconds late")
    faults.add_argument("--delay-seconds", type=_seconds, default=1.0, metavar="S", help="(default 1)")
    faults.add_argument("--malformed-rate", type=_share, default=0.0, metavar="R",
                        help="also publish a malformed report (truncated, or its signature broken) under a "
                             "fresh id")
    faults.add_argument("--down-rate", type=_share, default=0.0, metavar="R",
                        help="on a delivery, go down for --down-seconds: deliveries wait, then are processed "
                             "in order")
    faults.add_argument("--down-seconds", type=_seconds, default=1.0, metavar="S", help="(default 1)")
    faults.add_argument("--reject-file-rate", type=_share, default=0.0, metavar="R",
                        help="reject a whole transfer message: pain.002 RJCT with AM10, nothing booked")


def bank_from_args(args: argparse.Namespace, pki_dir: Path, clock: Callable[[], datetime.datetime]
                   ) -> SimulatedBank:
    """The bank :func:`add_bank_arguments`' options describe, with its keys from the ``vgw pki init`` folder
    ``pki_dir`` (the bank's key and certificate, the gateway's certificate it pins). Opens ``--ledger`` for
    appending (it lives as long as the process)."""
    from simulators.pki.layout import load_cert, load_key

    ledger = open(args.ledger, "a", encoding="utf-8") if args.ledger else None  # noqa: SIM115 - lives with the process
    faults = BankFaults(seed=args.seed, duplicate_rate=args.duplicate_rate, reorder_rate=args.reorder_rate,
                        drop_rate=args.drop_rate, delay_rate=args.delay_rate, delay_seconds=args.delay_seconds,
                        malformed_rate=args.malformed_rate, down_rate=args.down_rate,
                        down_seconds=args.down_seconds, reject_file_rate=args.reject_file_rate)
    return SimulatedBank(load_cert(pki_dir / "gateway/cert.pem"), load_key(pki_dir / "bank/key.pem"),
                         load_cert(pki_dir / "bank/cert.pem"), clock, seed=args.seed, return_rate=args.return_rate,
                         notify=not args.no_notifications, ledger=ledger, settlement_delay=args.settlement_delay,
                         faults=faults)


# --- `vgw sim bank` ----------------------------------------------------------------------------------------------

def _run(args) -> int:
    import json

    import pika
    from twisted.internet import reactor

    from adapters.bank.amqp_transport import AmqpBankTransport
    from adapters.bank.transport import BankTopology

    bank = bank_from_args(args, Path(args.pki), lambda: datetime.datetime.now(datetime.timezone.utc))
    transport = AmqpBankTransport(pika.URLParameters(args.amqp), BankTopology().prefixed(args.topology_prefix),
                                  reactor=reactor)

    def started(_):
        bank.attach(transport, transport.topology.transfers_queue, reactor=reactor)
        print("vgw sim bank: ready", flush=True)

    def stopping():
        if bank.link is not None:
            bank.link.cancel_pending()
        return transport.stop()

    reactor.callWhenRunning(lambda: transport.start().addCallbacks(started, lambda f: reactor.stop()))
    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.run()
    print(json.dumps({"bank": vars(bank.counts), "booked": sum(bank.booked.values()),
                      "booked_twice": sum(1 for n in bank.booked.values() if n > 1)}), flush=True)
    return 0


def register(registry) -> None:
    p = registry.command("sim", "bank", handler=_run, group_help="simulators of agencies and the bank",
                         help="the simulated treasury agent bank over RabbitMQ: books pain.001 transfers once, "
                              "answers with signed pain.002 and camt.054, returns payments by payee account, "
                              "and injects faults on demand")
    from adapters.cli.bank import add_link_arguments

    add_link_arguments(p, pki_help="a `vgw pki init` folder (the bank's key, the gateway's certificate)")
    add_bank_arguments(p)
