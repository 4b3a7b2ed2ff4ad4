"""``vgw bench bank``: a bank day — 50,000 payments batched, validated, signed and published; the bank's
acknowledgements for all of them consumed — timed phase by phase, printed as JSON.

Phases, each timed on its own so one does not hide in another:

1. *setup* (not a result): a PKI, a store holding the day's treasury-accepted vouchers (simulators/bank_day.py).
2. *outbound*: the batcher reads the vouchers, builds every pain.001, validates each against the official
   XSD, signs it and writes it with its payment lines and the vouchers' move to ``batched`` in one
   transaction; the relay publishes every message and waits for every confirm. No consumer runs meanwhile.
3. *bank* (not a result): the simulated bank consumes the transfers and publishes its signed reports.
4. *acks*: the gateway consumes every report — verifies the signature and the XSD, applies every line in one
   transaction per report, settles the vouchers — until every line is paid or returned.

Then ``reconcile`` must hold. Targets (issue 5): outbound < 10 s; acks ≥ 5,000 payment lines per second.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import tempfile
import time
import uuid
from pathlib import Path

from twisted.internet import defer, task
from twisted.internet.threads import deferToThread

from adapters.bank.exchange import BankBatcher, OutboxRelay, ReportIntake
from adapters.bank.transport import BankTopology, InProcessBankTransport
from adapters.storage.factory import open_store
from gateway.bank.pain001 import TAIPEI_TREASURY
from gateway.bank.payments import LineState
from gateway.bank.settlement import SigningIdentity
from gateway.reconciliation import reconcile
from simulators.bank import SimulatedBank
from simulators.bank_day import day_of_vouchers, place_accepted
from simulators.bench.common import machine
from simulators.pki.layout import agency_code, init_pki, load_cert, load_key

TARGET_OUTBOUND_S = 10.0
TARGET_ACKS_PER_S = 5_000


def _wait(reactor, condition, timeout: float, what: str) -> defer.Deferred:
    """Poll ``condition()`` (blocking, in a thread) every 50 ms until true; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout

    @defer.inlineCallbacks
    def poll():
        while not (yield deferToThread(condition)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not within {timeout} s: {what}")
            yield task.deferLater(reactor, 0.05, lambda: None)
    return poll()


@defer.inlineCallbacks
def _run(reactor, args) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    tmp = Path(tempfile.mkdtemp(prefix="vgw-bench-bank-"))
    manifest = init_pki(tmp / "pki", agencies=1, now=now)
    gateway_cert = load_cert(Path(manifest["gateway"]["cert"]))
    bank_cert = load_cert(Path(manifest["bank"]["cert"]))
    store = open_store(args.store or f"sqlite:///{tmp / 'bank-day.db'}")
    setup = time.perf_counter()
    agencies = [agency_code(i) for i in range(args.agencies)]
    vouchers = day_of_vouchers(args.payments, agencies=agencies, today=now.date(), seed=args.seed)
    yield deferToThread(place_accepted, store, vouchers, at=now)
    setup_s = time.perf_counter() - setup

    if args.amqp:
        import pika

        from adapters.bank.amqp_transport import AmqpBankTransport

        parameters = pika.URLParameters(args.amqp)
        topology = BankTopology().prefixed(f"bench{uuid.uuid4().hex[:6]}.")
        transport = AmqpBankTransport(parameters, topology, reactor=reactor)
    else:
        transport = InProcessBankTransport(reactor=reactor)
    yield transport.start()
    signer = SigningIdentity(load_key(Path(manifest["gateway"]["key"])), gateway_cert, TAIPEI_TREASURY)
    batcher = BankBatcher(store, signer, max_per_message=args.max_per_message)
    relay = OutboxRelay(store, transport)
    try:
        # 2. outbound
        started = time.perf_counter()
        cpu0 = time.process_time()
        lines = yield deferToThread(batcher.batch_all)
        built = time.perf_counter()
        yield relay.pump()
        published = time.perf_counter()
        outbound_cpu = time.process_time() - cpu0
        messages = len(store.bank_messages("out", limit=1000))
        assert store.unsent_messages() == [], "every transfer message confirmed"

        # 3. the bank books everything and answers; the gateway does not consume yet
        bank = SimulatedBank(gateway_cert, load_key(Path(manifest["bank"]["key"])), bank_cert,
                             lambda: datetime.datetime.now(datetime.timezone.utc), seed=args.seed,
                             return_rate=args.return_rate, notify=False)
        bank_started = time.perf_counter()
        bank.attach(transport, transport.topology.transfers_queue)
        yield _wait(reactor, lambda: bank.counts.messages == messages, 600, "the bank answered every message")
        bank_s = time.perf_counter() - bank_started

        # 4. acks
        intake = ReportIntake(store, bank_cert, treasury_account=TAIPEI_TREASURY.account_number)
        acks_started = time.perf_counter()
        cpu1 = time.process_time()
        transport.consume(transport.topology.reports_queue, intake.handler)
        yield _wait(reactor, lambda: intake.counts.lines >= lines or intake.counts.dead > 0,
                    600, "every payment line acknowledged")
        acks_s = time.perf_counter() - acks_started
        acks_cpu = time.process_time() - cpu1
        yield _wait(reactor, lambda: not store.queue("batched", limit=1), 120, "every voucher settled")
        result = reconcile(store.reconciliation_facts())
        by_state = {s: v["count"] for s, v in result.checked["by_state"].items()}
    finally:
        yield transport.stop()
        store.close()
        if args.amqp:
            from simulators.bench.transport import delete_topology

            delete_topology(parameters, topology)
    outbound_s = published - started
    acks_per_s = lines / acks_s
    return {
        "benchmark": "bank",
        "transport": "amqp" if args.amqp else "in-process",
        "store": "postgresql" if args.store and args.store.startswith("postgresql") else "sqlite",
        "payments": lines, "vouchers": len(vouchers), "messages": messages,
        "max_per_message": args.max_per_message,
        "outbound": {"seconds": round(outbound_s, 2), "build_validate_sign_store_s": round(built - started, 2),
                     "publish_confirm_s": round(published - built, 2), "cpu_s": round(outbound_cpu, 2),
                     "payments_per_s": round(lines / outbound_s), "target_s": TARGET_OUTBOUND_S,
                     "meets_target": outbound_s < TARGET_OUTBOUND_S},
        "bank": {"seconds": round(bank_s, 2), "paid": bank.counts.paid, "returned": bank.counts.returned},
        "acks": {"seconds": round(acks_s, 2), "lines_per_s": round(acks_per_s), "reports": intake.counts.reports,
                 "dead_lettered": intake.counts.dead, "cpu_s": round(acks_cpu, 2), "target_per_s": TARGET_ACKS_PER_S,
                 "meets_target": acks_per_s >= TARGET_ACKS_PER_S},
        "lines_by_state": by_state,
        "paid_equals_booked": by_state.get(LineState.PAID.value, 0) == sum(bank.booked.values()),
        "reconciled": result.ok, "discrepancy": result.discrepancy,
        "setup_s": round(setup_s, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "machine": machine(),
    }


def _command(args: argparse.Namespace) -> int:
    outcome: dict = {}

    def main(reactor):
        return _run(reactor, args).addCallback(outcome.update)

    try:
        task.react(main)
    except SystemExit as exit_:
        if exit_.code:
            raise
    print(json.dumps(outcome, ensure_ascii=False))
    return 0 if outcome.get("reconciled") else 1


def register(registry) -> None:
    p = registry.command("bench", "bank", handler=_command,
                         help="a bank day: N payments batched, validated, signed, published; every ack consumed (JSON)")
    p.add_argument("--payments", type=int, default=50_000, help="payment lines in the day (default 50,000)")
    p.add_argument("--agencies", type=int, default=20, help="agencies the vouchers come from (default 20)")
    p.add_argument("--max-per-message", type=int, default=5_000, help="transactions per pain.001 (default 5,000)")
    p.add_argument("--return-rate", type=float, default=0.02, help="share of payments the bank returns (default 0.02)")
    p.add_argument("--amqp", metavar="URL", help="publish over this RabbitMQ (default: the in-process transport)")
    p.add_argument("--store", metavar="URL", help="store URL (default: a temporary SQLite file)")
    p.add_argument("--seed", type=int, default=1, help="seed of the vouchers and the bank's returns")
