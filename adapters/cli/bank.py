"""``vgw bank run``: the bank exchange as a process of its own (adapters/bank/worker.py) over RabbitMQ.

A deployment runs it beside ``vgw serve`` (one or several: every loop is safe to run twice); the crash
tests kill it with SIGKILL at random moments and start it again. It prints ``vgw bank: ready`` once it
consumes reports, and stops on SIGTERM/SIGINT after the transport settled what it had in flight.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from adapters.bank.worker import BankWorker, BankWorkerSettings
from adapters.command_line import CliError


def worker_settings(args: argparse.Namespace) -> BankWorkerSettings:
    """The worker's settings from ``vgw bank run``'s options."""
    return BankWorkerSettings(batch_seconds=args.batch_seconds, relay_seconds=args.relay_seconds,
                              sweep_seconds=args.sweep_seconds, max_per_message=args.max_per_message,
                              unconfirmed_after=datetime.timedelta(hours=args.unconfirmed_hours),
                              resend_after=datetime.timedelta(seconds=args.resend_seconds),
                              max_resends=args.resend_limit)


def _run(args: argparse.Namespace) -> int:
    import pika
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from twisted.internet import reactor

    from adapters.bank.amqp_transport import AmqpBankTransport
    from adapters.bank.transport import BankTopology
    from adapters.storage.factory import open_store
    from gateway.bank.pain001 import TAIPEI_TREASURY
    from gateway.bank.settlement import SigningIdentity

    pki = Path(args.pki)
    try:
        signer = SigningIdentity(
            serialization.load_pem_private_key((pki / "gateway/key.pem").read_bytes(), password=None),
            x509.load_pem_x509_certificate((pki / "gateway/cert.pem").read_bytes()), TAIPEI_TREASURY)
        bank_cert = x509.load_pem_x509_certificate((pki / "bank/cert.pem").read_bytes())
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the gateway key or the bank certificate under {pki}: {exc}") from None
    from prometheus_client import CollectorRegistry
    from twisted.logger import globalLogBeginner, jsonFileLogObserver

    # JSON log lines on stderr (stdout carries only the ready line, which a supervisor may read and then
    # stop reading: logging there could fill the pipe and stall the process).
    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(sys.stderr)], redirectStandardIO=False)
    registry = CollectorRegistry()
    store = open_store(args.store)
    transport = AmqpBankTransport(pika.URLParameters(args.amqp), BankTopology().prefixed(args.topology_prefix),
                                  reactor=reactor, metrics=registry)
    worker = BankWorker(store, transport, signer, bank_cert, settings=worker_settings(args), reactor=reactor,
                        registry=registry)
    if args.metrics_listen:
        from prometheus_client.twisted import MetricsResource
        from twisted.web import resource, server

        host, _, port = args.metrics_listen.rpartition(":")
        root = resource.Resource()
        root.putChild(b"metrics", MetricsResource(registry=registry))
        reactor.listenTCP(int(port), server.Site(root, timeout=30.0), interface=host or "127.0.0.1")
    failed: list = []

    def started(_):
        print("vgw bank: ready", flush=True)

    def could_not_start(failure):
        failed.append(failure.getErrorMessage())
        reactor.stop()

    reactor.callWhenRunning(lambda: worker.start().addCallbacks(started, could_not_start))
    reactor.addSystemEventTrigger("before", "shutdown", worker.stop)
    reactor.addSystemEventTrigger("after", "shutdown", store.close)
    reactor.run()
    if failed:
        raise CliError(f"the bank exchange could not start: {failed[0]}")
    return 0


def _resend(args: argparse.Namespace) -> int:
    from adapters.cli.existing_store import open_existing_store
    from adapters.clock import utc_now
    from gateway.store import AuditEvent

    store = open_existing_store(args.store)
    try:
        message = store.bank_message("out", args.message_id)
        if message is None:
            raise CliError(f"no transfer message {args.message_id} in the store")
        lines = store.payments_of_message(args.message_id)
        open_lines = [row for row in lines if row.state.value in ("pending", "accepted")]
        event = AuditEvent(utc_now(), f"operator:{args.operator}", "bank.resend", f"message:{args.message_id}",
                           message.sha256, {"reason": args.reason, "open_lines": len(open_lines),
                                            "lines": len(lines)})
        if not store.mark_unsent(args.message_id, event):
            raise CliError(f"{args.message_id} is not sent yet: the relay sends it by itself")
    finally:
        store.close()
    print(f"{args.message_id}: the relay publishes the same signed bytes again ({len(open_lines)} of {len(lines)} "
          "lines still without a final answer); the bank answers a message it already has with its earlier "
          "reports and books nothing twice")
    return 0


def _not_negative(kind):
    def parse(text: str):
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} is negative")
        return value
    parse.__name__ = kind.__name__
    return parse


def add_link_arguments(parser: argparse.ArgumentParser, *, pki_help: str) -> None:
    """The options both ends of the bank link take (``vgw bank run`` and ``vgw sim bank``): the broker, the
    keys, and the topology prefix that must be the same on both ends."""
    parser.add_argument("--amqp", required=True, metavar="URL",
                        help="RabbitMQ URL (amqp://user:pass@host:port/vhost)")
    parser.add_argument("--pki", required=True, metavar="DIR", help=pki_help)
    parser.add_argument("--topology-prefix", default="", metavar="PREFIX",
                        help="prefix of the exchange and queue names (an isolated environment on a shared broker); "
                             "the same on both ends")


def register(registry) -> None:
    p = registry.command("bank", "run", handler=_run, group_help="the bank exchange (ISO 20022 over RabbitMQ)",
                         help="run the bank exchange: batch accepted payments into signed pain.001, relay them, "
                              "apply the bank's pain.002 / camt.054 reports")
    p.add_argument("--store", required=True, metavar="URL", help="store URL (sqlite:///PATH or postgresql://…)")
    add_link_arguments(p, pki_help="folder with gateway/key.pem, gateway/cert.pem (signing) and bank/cert.pem "
                                   "(pinned)")
    p.add_argument("--batch-seconds", type=float, default=5.0, help="batching interval (default 5)")
    p.add_argument("--relay-seconds", type=float, default=2.0, help="outbox relay interval (default 2)")
    p.add_argument("--sweep-seconds", type=float, default=10.0, help="settlement sweep interval (default 10)")
    p.add_argument("--max-per-message", type=int, default=5000, help="transactions per pain.001 (default 5,000)")
    p.add_argument("--metrics-listen", metavar="HOST:PORT",
                   help="serve Prometheus metrics (vgw_bank_*) at http://HOST:PORT/metrics (plain HTTP: bind locally)")
    p.add_argument("--unconfirmed-hours", type=float, default=24.0,
                   help="flag payment lines without a final bank answer after this many hours (default 24)")
    p.add_argument("--resend-seconds", type=_not_negative(float), default=1800.0, metavar="S",
                   help="send a transfer message again, the same signed bytes, when lines still have no final "
                        "answer this long after it was sent (default 1800; 0: never by itself); audited")
    p.add_argument("--resend-limit", type=_not_negative(int), default=5, metavar="N",
                   help="automatic re-sends per transfer message at most (default 5)")

    r = registry.command("bank", "resend", handler=_resend,
                         help="have the relay publish a transfer message again, the same signed bytes (the bank "
                              "says it never received it); audited")
    r.add_argument("--store", required=True, metavar="URL", help="store URL")
    r.add_argument("--operator", required=True, help="who asks (kept in the audit log)")
    r.add_argument("--reason", required=True, help="why, e.g. the bank's ticket number (kept in the audit log)")
    r.add_argument("message_id", metavar="MSGID", help="the transfer message's MsgId (VGW…)")
