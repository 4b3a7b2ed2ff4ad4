"""``vgw serve``: the gateway's HTTPS intake on Twisted, with mTLS, for testers from a ``vgw pki init`` folder.

``--pki DIR`` takes the gateway's TLS certificate and key, the trust anchors, the CRLs and the role registry
from the folder; ``--store`` picks SQLite (the embedded default) or PostgreSQL. One line is logged when the
gateway accepts connections. SIGTERM/SIGINT stop it gracefully: the listener closes, requests in flight in
the thread pool finish, then the store is closed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def _listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _serve(args: argparse.Namespace) -> int:
    # Imported here, not at the top: every `vgw` command builds the parser, and only this one needs Twisted.
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, jsonFileLogObserver

    from gateway.bank_directory import BankDirectory

    from .bootstrap import ConfigError, PlatformConfig, build_platform
    from .cli import CliError
    from .http_api import GatewayHttpApi, make_site
    from .intake_service import IntakeService
    from .store_factory import open_store
    from .tls import server_tls_options

    pki = Path(args.pki)
    try:
        platform = build_platform(PlatformConfig.from_pki_dir(pki, use_ocsp=args.ocsp,
                                                              revocation_max_age=args.revocation_max_age))
        gateway_cert = x509.load_pem_x509_certificate((pki / "gateway/cert.pem").read_bytes())
        gateway_key = serialization.load_pem_private_key((pki / "gateway/key.pem").read_bytes(), password=None)
        tls = server_tls_options(pki / "gateway/cert.pem", pki / "gateway/key.pem",
                                 [pki / "root/cert.pem", pki / "intermediate/cert.pem"],
                                 chain_paths=(pki / "intermediate/cert.pem",))
    except (ConfigError, OSError, ValueError) as exc:
        raise CliError(f"cannot load the PKI folder {pki}: {exc}") from None
    store_url = args.store or f"sqlite:///{Path('vgw.sqlite3').resolve()}"
    try:
        store = open_store(store_url)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    service = IntakeService(platform=platform, banks=BankDirectory.shipped(), store=store,
                            gateway_key=gateway_key, gateway_cert=gateway_cert)
    site = make_site(GatewayHttpApi(service), max_body=args.max_body)
    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(sys.stdout)], redirectStandardIO=False)
    host, port = args.listen
    reactor.suggestThreadPoolSize(args.threads)
    port_object = reactor.listenSSL(port, site, tls, interface=host)
    reactor.addSystemEventTrigger("after", "shutdown", store.close)
    actual = port_object.getHost().port
    reactor.callWhenRunning(lambda: print(f"vgw: ready on https://{host}:{actual} store={store_url.split('@')[-1]}",
                                          flush=True))
    reactor.run()
    return 0


def register(registry) -> None:
    p = registry.command(None, "serve", help="run the gateway (HTTPS intake with client certificates)",
                         handler=_serve)
    p.add_argument("--pki", required=True, help="a `vgw pki init` folder: TLS files, trust anchors, CRLs, registry")
    p.add_argument("--listen", type=_listen_address, default=("127.0.0.1", 8443), help="HOST:PORT (default "
                   "127.0.0.1:8443; port 0 picks a free one)")
    p.add_argument("--store", help="sqlite:///PATH (default ./vgw.sqlite3) or postgresql://...")
    p.add_argument("--ocsp", action="store_true", help="ask the OCSP responders named in certificates, then CRLs")
    p.add_argument("--revocation-max-age", type=float, default=300.0,
                   help="seconds a revocation answer or CRL is reused at most (default 300; 0 asks every time)")
    p.add_argument("--max-body", type=int, default=8 * 1024 * 1024, help="largest accepted body in bytes")
    p.add_argument("--threads", type=int, default=8, help="worker threads for verification and the store")
