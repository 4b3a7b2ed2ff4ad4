"""``vgw serve``: the gateway's HTTPS intake on Twisted, with mTLS.

Settings come from ``--config FILE.toml``, ``VGW_*`` environment variables and options, in that order of
precedence (see :mod:`adapters.serve.settings`); ``--pki DIR`` fills the TLS and trust files from a ``vgw pki init``
folder. One line is printed when the gateway accepts connections. SIGTERM/SIGINT stop it gracefully: the
listener closes, requests in flight in the thread pool finish, then the store is closed.

With ``workers`` above 1 this process only supervises (:mod:`adapters.serve.pool`): it binds the listeners,
and each worker process (:mod:`adapters.serve.worker`) runs :func:`run_gateway` on those same sockets,
because checking vouchers is CPU work under one GIL per process.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from adapters.command_line import CliError
from adapters.serve.ready import ready_line
from adapters.serve.settings import SETTINGS, SettingsError, load_settings

MAX_WORKERS = 64


def settings_from_args(args: argparse.Namespace, **forced) -> dict:
    """The settings of a ``vgw serve``-like command: defaults < ``--config`` < ``VGW_*`` < options < ``forced``
    (flat names with dots spelt as ``__``: ``bank__exchange=True``); refused with :class:`CliError`."""

    overrides = {"pki": args.pki, "listen": args.listen, "store": args.store, "trust.ocsp": args.ocsp or None,
                 "trust.revocation_max_age": args.revocation_max_age, "limits.max_body": args.max_body,
                 "limits.threads": args.threads, "limits.rate": args.rate_limit, "limits.burst": args.rate_burst,
                 "metrics.listen": args.metrics_listen, "amqp.url": args.amqp, "workers": args.workers,
                 "bank.exchange": args.bank_exchange or None, "bank.amqp": args.bank_amqp}
    overrides.update({name.replace("__", "."): value for name, value in forced.items()})
    try:
        s = load_settings(Path(args.config) if args.config else None, os.environ, overrides)
        if not 1 <= s["workers"] <= MAX_WORKERS:
            raise SettingsError(f"workers: expected 1 to {MAX_WORKERS}, got {s['workers']}")
    except SettingsError as exc:
        raise CliError(f"cannot start: {exc}") from None
    return s


def _serve(args: argparse.Namespace) -> int:

    s = settings_from_args(args)
    if problem := bank_exchange_problem(s):
        raise CliError(f"cannot start: {problem}")
    from adapters.notices.setup import notices_problem

    if problem := notices_problem(s):
        raise CliError(f"cannot start: {problem}")
    if s["workers"] == 1:
        return run_gateway(s)
    from adapters.serve.pool import WorkerPool

    return WorkerPool(s).run()


def run_gateway(s: dict, seat=None, bank_peer=None) -> int:
    """Build the gateway from loaded settings and run the reactor until SIGTERM/SIGINT.

    ``seat`` is None for a single process, which listens itself and prints the ready line. A worker of
    ``vgw serve --workers N`` passes its :class:`adapters.serve.worker.WorkerSeat`: the seat's shared metrics
    replace the process's own, and the seat adopts the supervisor's listeners and reports readiness to it.

    ``bank_peer(transport)`` is for ``vgw sim serve`` only: with ``bank.exchange`` on and no ``bank.amqp``, the
    exchange runs on the in-process transport and ``bank_peer`` attaches the simulated bank to it.
    """
    # Imported here, not at the top: every `vgw` command builds the parser, and only this one needs Twisted.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, jsonFileLogObserver

    from adapters.http.settings import ApiSettings, listen_address
    from adapters.http.site import GatewayHttpApi, make_metrics_site, make_site
    from adapters.http.tls import server_tls_options
    from adapters.serve.bootstrap import ConfigError, PlatformConfig, build_platform
    from adapters.serve.queue_metrics import WorkflowQueueMetrics, start_refreshing
    from adapters.services.actions import ActionService
    from adapters.services.intake import IntakeService
    from adapters.services.treasury import TreasuryService, check_after_release, start_sweep
    from adapters.statements.service import StatementService
    from adapters.storage.factory import open_store
    from gateway.vouchers.bank_directory import BankDirectory

    try:
        try:
            host, port = listen_address(s["listen"])
        except ValueError as exc:
            raise SettingsError(f"listen: {exc}") from None
        platform = build_platform(PlatformConfig(
            roots=s["trust.roots"], intermediates=s["trust.intermediates"], registry=s["trust.registry"],
            crl_dir=s["trust.crl_dir"], use_ocsp=s["trust.ocsp"], soft_fail=s["trust.soft_fail"],
            revocation_max_age=s["trust.revocation_max_age"]))
        gateway_cert = x509.load_pem_x509_certificate(Path(s["tls.cert"]).read_bytes())
        gateway_key = serialization.load_pem_private_key(Path(s["tls.key"]).read_bytes(), password=None)
        tls = server_tls_options(s["tls.cert"], s["tls.key"], [*s["trust.roots"], *s["trust.intermediates"]],
                                 chain_paths=s["tls.chain"])
        api_settings = ApiSettings.from_settings(s)
        store = open_store(s["store"])
    except (SettingsError, ConfigError, OSError, ValueError) as exc:
        raise CliError(f"cannot start: {exc}") from None
    service = IntakeService(platform=platform, banks=BankDirectory.shipped(), store=store,
                            gateway_key=gateway_key, gateway_cert=gateway_cert)
    treasury = TreasuryService(store)
    actions = ActionService(intake=service, store=store, after_commit=check_after_release(treasury))
    statements = StatementService(intake=service, store=store)
    from adapters.console.wiring import build_console
    api = GatewayHttpApi(service, api_settings, actions=actions, metrics=seat.metrics if seat else None,
                         statements=statements, console=build_console(s, intake=service, store=store, actions=actions))
    site = make_site(api, max_body=s["limits.max_body"])
    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(sys.stdout)], redirectStandardIO=False)
    reactor.suggestThreadPoolSize(s["limits.threads"])
    if seat is None:
        https_port = reactor.listenSSL(port, site, tls, interface=host).getHost().port
        metrics_port = None
        if api_settings.metrics_listen:
            metrics_host, metrics_port = api_settings.metrics_listen
            metrics_port = reactor.listenTCP(metrics_port, make_metrics_site(api),
                                             interface=metrics_host).getHost().port
        ready = ready_line(s, https_port, metrics_port)
        reactor.callWhenRunning(lambda: print(ready, flush=True))
    else:
        seat.start(reactor, site, tls)
    if s["bank.exchange"] and (seat is None or seat.spec.index == 1):
        # One bank exchange per gateway, like the event publisher (every loop is safe twice, one is enough).
        _start_bank_exchange(reactor, s, store, api.metrics.registry, bank_peer)
    if s["notices.smtp_host"] and (seat is None or seat.spec.index == 1):
        from adapters.notices.setup import start_notices  # deposit notices (入戶通知), one worker per gateway
        start_notices(reactor, s, store, api.metrics.registry)
    if s["amqp.url"]:
        # One event publisher per gateway: the single process, or worker 1 of several (adapters/amqp/event_publisher.py).
        _start_amqp(reactor, service, s, api.metrics.registry, actions,
                    publish_events=seat is None or seat.spec.index == 1)
    _watch_registry(s["trust.registry"], platform)
    start_sweep(treasury)
    start_refreshing(WorkflowQueueMetrics(api.metrics.registry, store))
    reactor.addSystemEventTrigger("after", "shutdown", store.close)
    reactor.run()
    return 0


REGISTRY_CHECK_SECONDS = 5.0


def _watch_registry(path: Path, platform) -> None:
    """Pick up registry edits while running (a new deputy, an ended grant); a bad edit is logged, not applied."""
    from twisted.internet.task import LoopingCall
    from twisted.logger import Logger

    from adapters.serve.registry_reloader import RegistryReloader

    log = Logger(namespace="vgw.registry")
    reloader = RegistryReloader(path, platform)

    def check() -> None:
        result = reloader.reload_if_changed()
        if result.error:
            log.error("registry not reloaded: {error}", error=result.error)
        elif result.changed:
            log.info("registry reloaded: {grants} grants", grants=result.grants)

    LoopingCall(check).start(REGISTRY_CHECK_SECONDS, now=False)


def bank_exchange_problem(s: dict, *, embedded: bool = False) -> str | None:
    """Why the bank settings cannot run, or None. Without ``bank.amqp`` the transfer messages would go to an
    in-process queue that no bank reads, so only ``vgw sim serve`` (``embedded``) may leave it unset."""
    if not s["bank.exchange"]:
        return None
    if not s["bank.amqp"] and not embedded:
        return ("bank.exchange needs bank.amqp (the bank's RabbitMQ); for a simulated bank in this same process "
                "run `vgw sim serve`")
    if s["bank.amqp"] and not s["bank.amqp"].startswith("amqp://"):
        return "bank.amqp: expected amqp://… (TLS to the broker, amqps://, is not supported yet)"
    if s["bank.cert"] is None or not Path(s["bank.cert"]).is_file():
        return f"bank.cert: the bank's certificate is needed to pin its reports (got {s['bank.cert']})"
    for name in ("bank.batch_seconds", "bank.relay_seconds", "bank.sweep_seconds", "bank.unconfirmed_hours"):
        if not s[name] > 0:
            return f"{name}: expected a positive number, got {s[name]}"
    if s["bank.resend_seconds"] < 0 or s["bank.max_resends"] < 0:
        return "bank.resend_seconds and bank.max_resends: expected numbers not below 0"
    if not 1 <= s["bank.max_per_message"] <= 99_999:
        return f"bank.max_per_message: expected 1 to 99,999, got {s['bank.max_per_message']}"
    return None


def _start_bank_exchange(reactor, s: dict, store, registry, bank_peer=None) -> None:
    """Run :class:`adapters.bank.worker.BankWorker` in this reactor, on RabbitMQ (``bank.amqp``) or, for
    ``vgw sim serve``, on the in-process transport with ``bank_peer`` attached; stopped before the store."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from twisted.logger import Logger

    from adapters.bank.transport import BankTopology, InProcessBankTransport
    from adapters.bank.worker import BankWorker, BankWorkerSettings
    from gateway.bank.pain001 import TAIPEI_TREASURY
    from gateway.bank.settlement import SigningIdentity

    problem = bank_exchange_problem(s, embedded=bank_peer is not None)
    if problem:
        raise CliError(f"cannot start: {problem}")
    try:
        signer = SigningIdentity(
            serialization.load_pem_private_key(Path(s["tls.key"]).read_bytes(), password=None),
            x509.load_pem_x509_certificate(Path(s["tls.cert"]).read_bytes()), TAIPEI_TREASURY)
        bank_cert = x509.load_pem_x509_certificate(Path(s["bank.cert"]).read_bytes())
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot start the bank exchange: {exc}") from None
    topology = BankTopology().prefixed(s["bank.topology_prefix"])
    if s["bank.amqp"]:
        import pika

        from adapters.bank.amqp_transport import AmqpBankTransport

        transport = AmqpBankTransport(pika.URLParameters(s["bank.amqp"]), topology, reactor=reactor,
                                      metrics=registry)
    else:
        transport = InProcessBankTransport(topology, reactor=reactor, metrics=registry)
    settings = BankWorkerSettings(batch_seconds=s["bank.batch_seconds"], relay_seconds=s["bank.relay_seconds"],
                                  sweep_seconds=s["bank.sweep_seconds"], max_per_message=s["bank.max_per_message"],
                                  unconfirmed_after=datetime.timedelta(hours=s["bank.unconfirmed_hours"]),
                                  resend_after=datetime.timedelta(seconds=s["bank.resend_seconds"]) or None,
                                  max_resends=s["bank.max_resends"])
    worker = BankWorker(store, transport, signer, bank_cert, settings=settings, reactor=reactor, registry=registry)
    log = Logger(namespace="vgw.bank")

    # The broker may be down when the gateway starts: the intake serves meanwhile (what it accepts waits in
    # the store), and the exchange tries again with a growing pause until the broker answers.
    pauses = iter((1, 2, 5, 10, 20))
    retry: list = []

    def start():
        retry.clear()
        worker.start().addErrback(could_not_start)

    def could_not_start(failure):
        pause = next(pauses, 30)
        log.error("the bank exchange could not start: {why}; trying again in {pause} s",
                  why=failure.getErrorMessage(), pause=pause)
        retry.append(reactor.callLater(pause, start))

    def stop():
        for call in retry:
            if call.active():
                call.cancel()
        return worker.stop()

    if bank_peer is not None:
        reactor.callWhenRunning(bank_peer, transport)
    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)


def _start_amqp(reactor, service, s: dict, registry, actions=None, *, publish_events: bool = False) -> None:
    """Also take vouchers and actions from RabbitMQ, and publish queue events when ``publish_events``; both
    stopped before the store closes, so in-flight messages finish."""
    import pika

    from adapters.amqp.event_publisher import EventPublisher
    from adapters.amqp.intake import AmqpIntake

    if not s["amqp.users"]:
        raise CliError("amqp.url is set but amqp.users maps no broker user to an agency")
    intake = AmqpIntake(service, pika.URLParameters(s["amqp.url"]), agencies=s["amqp.users"], actions=actions,
                        max_body=s["limits.max_body"], registry=registry)
    try:
        intake.start()
    except Exception as exc:  # pika raises many types for "cannot connect"; all mean the same here
        raise CliError(f"cannot start the AMQP intake: {exc}") from None
    service.amqp_intake = intake  # readiness answers 503 while it is disconnected
    reactor.addSystemEventTrigger("before", "shutdown", intake.stop)
    if publish_events:
        publisher = EventPublisher(service.store, pika.URLParameters(s["amqp.url"]), registry=registry)
        try:
            publisher.start()
        except Exception as exc:
            raise CliError(f"cannot start the AMQP event publisher: {exc}") from None
        reactor.addSystemEventTrigger("before", "shutdown", publisher.stop)


def register(registry) -> None:
    p = registry.command(None, "serve", help="run the gateway (HTTPS intake with client certificates)",
                         handler=_serve)
    add_serve_arguments(p)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``vgw serve``, which ``vgw sim serve`` takes as well."""
    p.add_argument("--config", help="settings file (TOML); every setting also from VGW_* environment variables: "
                   + ", ".join(s.env for s in SETTINGS))
    p.add_argument("--pki", type=Path, help="a `vgw pki init` folder: TLS files, trust anchors, CRLs, registry")
    p.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:8443; port 0 picks a free one)")
    p.add_argument("--store", help="sqlite:///PATH (default ./vgw.sqlite3) or postgresql://...")
    p.add_argument("--ocsp", action="store_true", help="ask the OCSP responders named in certificates, then CRLs")
    p.add_argument("--revocation-max-age", type=float,
                   help="seconds a revocation answer or CRL is reused at most (default 300; 0 asks every time)")
    p.add_argument("--max-body", type=int, help="largest accepted body in bytes (default 8 MiB)")
    p.add_argument("--threads", type=int, help="worker threads for verification and the store (default 8)")
    p.add_argument("--rate-limit", type=float, help="requests per second per agency (default 50; 0: off)")
    p.add_argument("--rate-burst", type=int, help="requests an agency may send at once (default 100)")
    p.add_argument("--metrics-listen", help="HOST:PORT for plain-HTTP /metrics, e.g. 127.0.0.1:9100")
    p.add_argument("--amqp", help="amqp://... to also take vouchers from RabbitMQ (needs amqp.users)")
    p.add_argument("--workers", type=int, help="processes sharing the listener, each with its own threads and "
                   "store connections (default 1; see docs/operations.md)")
    p.add_argument("--bank-exchange", action="store_true",
                   help="also run the bank exchange in this process (else run `vgw bank run` beside it)")
    p.add_argument("--bank-amqp", metavar="URL", help="amqp://... of the bank link (with --bank-exchange)")
