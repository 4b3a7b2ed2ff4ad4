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


def _enroll(args: argparse.Namespace) -> int:
    """A person's signing key made on their token and certified (simulators/pki/layout.py enroll)."""
    from adapters.tokens.enroll import enrol_key
    from adapters.tokens.pins import read_pin
    from adapters.tokens.uri import named_token
    from simulators.pki.layout import enroll, person_entry

    base = Path(args.dir)
    if not (base / "manifest.json").exists():
        raise _usage(f"{args.dir} is not a PKI folder made by `vgw pki init`")
    ref = named_token(key=args.key, module=args.pkcs11_module, token_label=args.token_label, key_label=args.key_label)
    if ref is None:
        raise _usage("name the token: --key pkcs11:… or --pkcs11-module LIB --token-label L")
    try:
        person_entry(json.loads((base / "manifest.json").read_text(encoding="utf-8")), args.agency, args.role)
    except KeyError as exc:
        raise _usage(str(exc.args[0])) from None
    now = utc_now()
    with enrol_key(ref, read_pin(ref, pin_file=args.pin_file), kind=args.key_kind) as made:
        token = {"module": ref.module, "token_label": ref.token_label, "key_label": made.label}
        cert = enroll(base, args.agency, args.role, made.public_key, now=now, token=token)
        made.store_certificate(cert)
    result = {"agency": args.agency, "role": args.role, "serial": format(cert.serial_number, "X"),
              "subject": cert.subject.rfc4514_string(), "token": token}
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"{args.agency} {args.role}: a {args.key_kind.upper()} key made on token {ref.token_label!r} "
              f"(non-extractable), certificate {result['serial']} stored beside it; the registry follows")
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

    p = registry.command("pki", "enroll", help="make a person's signing key on their PKCS#11 token (a card; "
                         "SoftHSM2 in tests) and certify it, as a card is issued", handler=_enroll,
                         group_help=group_help)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--agency", required=True, help="the person's agency code (379030000A: the treasury)")
    p.add_argument("--role", required=True, help="their role: preparer, reviewer, accountant, head, releaser, "
                   "deputy, or treasury")
    p.add_argument("--key", metavar="PKCS11-URI", help="the token (and key label) as an RFC 7512 URI")
    p.add_argument("--pkcs11-module", metavar="LIB", help="the token's PKCS#11 library")
    p.add_argument("--token-label", metavar="L", help="the token's label")
    p.add_argument("--key-label", metavar="K", help="the new key's label (default: signature)")
    p.add_argument("--pin-file", metavar="F", help="a file holding the token's PIN")
    p.add_argument("--key-kind", choices=("rsa", "ec"), default="rsa",
                   help="RSA-2048 (the citizen cards, default) or ECDSA P-256")
    p.add_argument("--json", action="store_true", help="print what was made as JSON")

    p = registry.command("pki", "ocsp", help="run the OCSP responder (and CRL server) for DIR", handler=_ocsp,
                         group_help=group_help)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
