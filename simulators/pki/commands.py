"""``vgw pki init | revoke | ocsp``: the test CA's operator console."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cryptography import x509

from adapters.clock import utc_now
from adapters.command_line import CliError
from simulators.pki.layout import DEFAULT_OCSP_URL, GATEWAY_KEY_KINDS, init_pki, revoke


def _usage(message: str) -> Exception:

    return CliError(message)


def _init(args: argparse.Namespace) -> int:
    if args.agencies < 1 or args.agencies > 999:
        raise _usage("--agencies must be between 1 and 999")
    target = Path(args.dir)
    if (target / "manifest.json").exists() and not args.force:
        raise _usage(f"{target} already holds a PKI (use --force to overwrite)")
    manifest = init_pki(target, agencies=args.agencies, now=utc_now(), ocsp_url=args.ocsp_url, seed=args.seed,
                        gateway_key=args.gateway_key)
    if args.json:
        print(json.dumps(manifest, ensure_ascii=False, indent=2))
    else:
        print(f"PKI in {manifest['dir']}: root, intermediate, gateway, bank, OCSP responder, "
              f"{len(manifest['agencies'])} agencies with 5 role holders and a deputy each")
    return 0


REASONS = {flag.name: flag for flag in x509.ReasonFlags if flag is not x509.ReasonFlags.unspecified}


def _revoke(args: argparse.Namespace) -> int:
    try:
        cert = x509.load_pem_x509_certificate(Path(args.cert).read_bytes())
    except OSError as exc:
        raise _usage(f"cannot read {args.cert}: {exc.strerror}") from None
    except ValueError as exc:
        raise _usage(f"{args.cert} is not a PEM certificate: {exc}") from None
    if not (Path(args.dir) / "ca-state.json").exists():
        raise _usage(f"{args.dir} is not a PKI folder made by `vgw pki init`")
    try:
        serial = revoke(Path(args.dir), cert, now=utc_now(), reason=REASONS[args.reason])
    except ValueError as exc:
        raise _usage(str(exc)) from None
    print(f"revoked {serial} ({args.reason}); CRLs reissued, OCSP answers revoked from now on")
    return 0


def _ocsp(args: argparse.Namespace) -> int:
    from simulators.pki.ocsp_responder import run

    if not (Path(args.dir) / "ca-state.json").exists():
        raise _usage(f"{args.dir} is not a PKI folder made by `vgw pki init`")
    run(Path(args.dir), args.port, host=args.host)
    return 0


def register(registry) -> None:
    group_help = "the test PKI: GRCA-like root, MOICA-like intermediate, citizen and service certificates"
    p = registry.command("pki", "init", help="create a test PKI in DIR", handler=_init, group_help=group_help)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--agencies", type=int, default=2, help="how many agencies (default 2)")
    p.add_argument("--ocsp-url", default=DEFAULT_OCSP_URL,
                   help=f"OCSP URL written into certificates (default {DEFAULT_OCSP_URL})")
    p.add_argument("--seed", type=int, default=1, help="seed for names and IDs")
    p.add_argument("--gateway-key", choices=GATEWAY_KEY_KINDS, default="ec",
                   help="the gateway's key (TLS and receipts): ECDSA P-256 (default, cheaper per receipt) or RSA-2048")
    p.add_argument("--force", action="store_true", help="overwrite an existing PKI in DIR")
    p.add_argument("--json", action="store_true", help="print the manifest of absolute paths as JSON")

    p = registry.command("pki", "revoke", help="revoke a certificate (CRL and OCSP)", handler=_revoke,
                         group_help=group_help)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("cert", metavar="CERT.pem")
    p.add_argument("--reason", default="key_compromise", choices=sorted(REASONS))

    p = registry.command("pki", "ocsp", help="run the OCSP responder (and CRL server) for DIR", handler=_ocsp,
                         group_help=group_help)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
