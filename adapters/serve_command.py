"""``vgw serve``: the gateway's HTTPS intake on Twisted, with mTLS.

Settings come from ``--config FILE.toml``, ``VGW_*`` environment variables and options, in that order of
precedence (see :mod:`adapters.settings`); ``--pki DIR`` fills the TLS and trust files from a ``vgw pki init``
folder. One line is printed when the gateway accepts connections. SIGTERM/SIGINT stop it gracefully: the
listener closes, requests in flight in the thread pool finish, then the store is closed.

With ``workers`` above 1 this process only supervises (:mod:`adapters.worker_pool`): it binds the listeners,
and each worker process (:mod:`adapters.serve_worker`) runs :func:`run_gateway` on those same sockets,
because checking vouchers is CPU work under one GIL per process.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .settings import SETTINGS, SettingsError, load_settings

MAX_WORKERS = 64


def _serve(args: argparse.Namespace) -> int:
    from .cli import CliError

    overrides = {"pki": args.pki, "listen": args.listen, "store": args.store, "trust.ocsp": args.ocsp or None,
                 "trust.revocation_max_age": args.revocation_max_age, "limits.max_body": args.max_body,
                 "limits.threads": args.threads, "limits.rate": args.rate_limit, "limits.burst": args.rate_burst,
                 "metrics.listen": args.metrics_listen, "amqp.url": args.amqp, "workers": args.workers}
    try:
        s = load_settings(Path(args.config) if args.config else None, os.environ, overrides)
        if not 1 <= s["workers"] <= MAX_WORKERS:
            raise SettingsError(f"workers: expected 1 to {MAX_WORKERS}, got {s['workers']}")
    except SettingsError as exc:
        raise CliError(f"cannot start: {exc}") from None
    if s["workers"] == 1:
        return run_gateway(s)
    from .worker_pool import WorkerPool

    return WorkerPool(s).run()


def ready_line(s: dict, https_port: int, metrics_port: int | None) -> str:
    """The one line saying the gateway accepts connections, and where (never a password from a URL)."""
    from .api_settings import listen_address

    line = f"vgw: ready on https://{listen_address(s['listen'])[0]}:{https_port}"
    if metrics_port is not None:
        line += f" metrics=http://{listen_address(s['metrics.listen'])[0]}:{metrics_port}/metrics"
    line += f" store={s['store'].split('@')[-1]}"
    if s["amqp.url"]:
        line += f" amqp={s['amqp.url'].split('@')[-1]}"
    return line


def run_gateway(s: dict, seat=None) -> int:
    """Build the gateway from loaded settings and run the reactor until SIGTERM/SIGINT.

    ``seat`` is None for a single process, which listens itself and prints the ready line. A worker of
    ``vgw serve --workers N`` passes its :class:`adapters.serve_worker.WorkerSeat`: the seat's shared metrics
    replace the process's own, and the seat adopts the supervisor's listeners and reports readiness to it.
    """
    # Imported here, not at the top: every `vgw` command builds the parser, and only this one needs Twisted.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, jsonFileLogObserver

    from gateway.bank_directory import BankDirectory

    from .bootstrap import ConfigError, PlatformConfig, build_platform
    from .cli import CliError
    from .api_settings import ApiSettings, listen_address
    from .http_api import GatewayHttpApi, make_metrics_site, make_site
    from .action_service import ActionService
    from .queue_metrics import WorkflowQueueMetrics, start_refreshing
    from .treasury_service import TreasuryService, check_after_release, start_sweep
    from .intake_service import IntakeService
    from .store_factory import open_store
    from .tls import server_tls_options

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
    api = GatewayHttpApi(service, api_settings, actions=actions, metrics=seat.metrics if seat else None)
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
    if s["amqp.url"]:
        # One event publisher per gateway: the single process, or worker 1 of several (adapters/event_publisher.py).
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

    from .registry_reloader import RegistryReloader

    log = Logger(namespace="vgw.registry")
    reloader = RegistryReloader(path, platform)

    def check() -> None:
        result = reloader.reload_if_changed()
        if result.error:
            log.error("registry not reloaded: {error}", error=result.error)
        elif result.changed:
            log.info("registry reloaded: {grants} grants", grants=result.grants)

    LoopingCall(check).start(REGISTRY_CHECK_SECONDS, now=False)


def _start_amqp(reactor, service, s: dict, registry, actions=None, *, publish_events: bool = False) -> None:
    """Also take vouchers and actions from RabbitMQ, and publish queue events when ``publish_events``; both
    stopped before the store closes, so in-flight messages finish."""
    import pika

    from .amqp_intake import AmqpIntake
    from .cli import CliError
    from .event_publisher import EventPublisher

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
