"""The simulated treasury agent bank (代庫銀行): books the gateway's transfers, answers with signed reports.

It talks to the gateway only through a bank transport (RabbitMQ, or the in-process one of the embedded
default), exactly as the real bank would: it verifies the gateway's signature (pinned certificate) and the
official pain.001 schema, books each EndToEndId at most once, and answers every transfer message with a
signed pain.002 status report and, for what it paid, a camt.054 debit notification. Which payments it
returns (退匯) is decided by the account (a seeded hash), so a run is reproducible.

``booked`` counts bookings per EndToEndId: the crash tests read it to prove that nothing reached the bank
twice as a payment, whatever the gateway re-sent.
"""

from __future__ import annotations

import datetime
import hashlib
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509

from gateway.bank_envelope import open_sealed, seal
from gateway.bank_report_writing import build_camt054, build_pain002
from gateway.bank_settlement import BANK_NAME, GATEWAY_NAME, REPORT_ROUTING, TRANSFER_TYPE
from gateway.errors import Refusal
from gateway.pain001 import read_pain001
from gateway.signing import SignerKey

RETURN_REASONS = ("AC01", "AC04", "BE01")
"""Why a payment is returned (退匯): wrong account number, closed account, name/ID not matching the account."""


@dataclass
class BankCounts:
    messages: int = 0
    repeated_messages: int = 0
    refused_messages: int = 0
    duplicate_payments: int = 0
    paid: int = 0
    returned: int = 0
    reports: int = 0


@dataclass
class SimulatedBank:
    gateway_cert: x509.Certificate
    key: SignerKey
    cert: x509.Certificate
    clock: Callable[[], datetime.datetime]
    seed: int = 0
    return_rate: float = 0.02
    notify: bool = True  # also send camt.054 debit notifications for what was paid
    ledger: object = None  # a text file: one line per booking (EndToEndId, amount), for outside checks
    booked: Counter = field(default_factory=Counter)
    counts: BankCounts = field(default_factory=BankCounts)
    _answers: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _serial: int = 0
    _run: str = field(default_factory=lambda: uuid.uuid4().hex[:6].upper())

    def returns(self, end_to_end_id: str) -> str | None:
        """The reason this payment is returned, or None: a seeded hash of its EndToEndId."""
        digest = hashlib.sha256(f"{self.seed}:{end_to_end_id}".encode()).digest()
        if int.from_bytes(digest[:4], "big") / 2**32 < self.return_rate:
            return RETURN_REASONS[digest[4] % len(RETURN_REASONS)]
        return None

    def _next_id(self, prefix: str) -> str:
        """A message or booking reference unique to this bank run: a real bank never reuses one, and a
        restarted simulator must not either (the gateway would see a known report id with new content)."""
        self._serial += 1
        return f"{prefix}{self.clock().strftime('%Y%m%d')}{self._run}{self._serial:08d}"

    def receive(self, body: bytes) -> list[tuple[str, bytes]]:
        """Book one transfer message; the (message id, signed report) pairs to send back. A message seen before
        gets the same reports again (the gateway re-sent it after a crash); nothing is booked twice."""
        now = self.clock()
        try:
            sealed = open_sealed(body, signer_cert=self.gateway_cert, allowed_types=frozenset({TRANSFER_TYPE}), now=now)
        except Refusal:
            self.counts.refused_messages += 1
            raise
        with self._lock:
            if sealed.message_id in self._answers:
                self.counts.repeated_messages += 1
                return self._answers[sealed.message_id]
            self.counts.messages += 1
            transfers = read_pain001(sealed.document)
            statuses, entries = [], []
            for tx in transfers:
                e2e = tx.end_to_end_id
                if self.booked[e2e]:
                    self.counts.duplicate_payments += 1
                    continue  # never booked twice; its first answer stands
                reason = self.returns(e2e)
                reference = self._next_id("FB")
                if reason:
                    self.counts.returned += 1
                    statuses.append((e2e, "RJCT", reason, None, tx.amount, reference))
                else:
                    self.booked[e2e] += 1
                    if self.ledger is not None:
                        self.ledger.write(f"{e2e} {tx.amount}\n")
                    self.counts.paid += 1
                    statuses.append((e2e, "ACSC", None, None, tx.amount, reference))
                    entries.append((e2e, tx.amount, "DBIT", now.date(), reference, None))
            answers = [self._sealed("pain.002.001.10", build_pain002(
                message_id=(status_id := self._next_id("P2")), created_at=now,
                original_message_id=sealed.message_id,
                group_status="ACSC" if all(s[1] == "ACSC" for s in statuses) else "PART",
                tx_statuses=statuses), status_id, now)]
            if self.notify and entries:
                answers.append(self._sealed("camt.054.001.08", build_camt054(
                    message_id=(notice_id := self._next_id("C5")), created_at=now,
                    account=transfers[0].debtor_account,
                    entries=entries), notice_id, now))
            self.counts.reports += len(answers)
            self._answers[sealed.message_id] = answers
            if self.ledger is not None:
                self.ledger.flush()
            return answers

    def _sealed(self, message_type: str, document, message_id: str, now: datetime.datetime) -> tuple[str, bytes]:
        return message_id, seal(document, message_id=message_id, message_type=message_type, sender=BANK_NAME,
                                receiver=GATEWAY_NAME, key=self.key, cert=self.cert, created_at=now)

    def attach(self, transport, transfers_queue: str) -> None:
        """Consume transfer messages from ``transfers_queue`` and publish the reports back (routing ``reports``);
        each transfer message is acknowledged only after its reports were confirmed by the transport."""
        from twisted.internet import defer
        from twisted.internet.threads import deferToThread

        @defer.inlineCallbacks
        def handler(body: bytes, headers: dict, message_id: str | None):
            try:
                answers = yield deferToThread(self.receive, body)
            except Refusal:
                return "dead"
            try:
                yield defer.gatherResults([transport.publish(mid, REPORT_ROUTING, report, {"message-type": "report"})
                                           for mid, report in answers], consumeErrors=True)
            except defer.FirstError:
                # the reports did not get out (broker gone, or stopping): put the transfer back; it is booked
                # already, so the next delivery answers it from memory with the same reports
                return "retry"
            return "ack"

        transport.consume(transfers_queue, handler)


# --- `vgw sim bank` ----------------------------------------------------------------------------------------------

def _run(args) -> int:
    import json
    from pathlib import Path

    import pika
    from twisted.internet import reactor

    from adapters.bank_amqp import AmqpBankTransport
    from adapters.bank_transport import BankTopology

    from .pki.layout import load_cert, load_key

    pki = Path(args.pki)
    ledger = open(args.ledger, "a", encoding="utf-8") if args.ledger else None  # noqa: SIM115 - lives with the process
    bank = SimulatedBank(load_cert(pki / "gateway/cert.pem"), load_key(pki / "bank/key.pem"),
                         load_cert(pki / "bank/cert.pem"),
                         lambda: datetime.datetime.now(datetime.timezone.utc), seed=args.seed,
                         return_rate=args.return_rate, notify=not args.no_notifications, ledger=ledger)
    transport = AmqpBankTransport(pika.URLParameters(args.amqp), BankTopology().prefixed(args.topology_prefix),
                                  reactor=reactor)

    def started(_):
        bank.attach(transport, transport.topology.transfers_queue)
        print("vgw sim bank: ready", flush=True)

    reactor.callWhenRunning(lambda: transport.start().addCallbacks(started, lambda f: reactor.stop()))
    reactor.addSystemEventTrigger("before", "shutdown", transport.stop)
    reactor.run()
    print(json.dumps({"bank": vars(bank.counts), "booked": sum(bank.booked.values()),
                      "booked_twice": sum(1 for n in bank.booked.values() if n > 1)}), flush=True)
    return 0


def register(registry) -> None:
    p = registry.command("sim", "bank", handler=_run, group_help="simulators of agencies and the bank",
                         help="the simulated treasury agent bank over RabbitMQ: books pain.001 transfers once, "
                              "answers with signed pain.002 and camt.054")
    from adapters.bank_commands import add_link_arguments

    add_link_arguments(p, pki_help="a `vgw pki init` folder (the bank's key, the gateway's certificate)")
    p.add_argument("--ledger", metavar="FILE", help="append one line per booking (EndToEndId amount)")
    p.add_argument("--return-rate", type=float, default=0.02, help="share of payments returned (default 0.02)")
    p.add_argument("--no-notifications", action="store_true", help="send pain.002 only, no camt.054")
    p.add_argument("--seed", type=int, default=0, help="seed of which payments are returned")
