"""``vgw voucher validate | sign | verify``: what an agency's tools and testers run on voucher files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lxml import etree

from adapters.cli.signing_key import add_signing_arguments, signing_material
from adapters.clock import taipei_today, utc_now
from adapters.command_line import CliError
from adapters.serve.bootstrap import ConfigError, PlatformConfig, build_platform
from gateway.errors import Refusal
from gateway.trust.roles import Role
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.check import check_signed_voucher, validate_document
from gateway.xmlsec.signing import sign_document


def read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror}") from None


def _validate(args: argparse.Namespace) -> int:
    data = read_input(args.input)
    voucher, problems = validate_document(data, today=taipei_today(), banks=BankDirectory.shipped())
    for problem in problems:
        line = problem.line if problem.line is not None else "-"
        print(f"{args.input}:{line}: {problem.path or '-'}: {problem.code}: {problem.message}")
    if problems:
        return 1
    print(f"{args.input}: valid: {voucher.voucher_id} revision {voucher.revision}, {len(voucher.lines)} lines, "
          f"NT${voucher.total_amount:,}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    if len(args.inputs) > 1 and not args.out_dir:
        raise CliError("signing several files needs --out-dir")
    with signing_material(args) as (key, cert):
        return _sign_files(args, key, cert)


def _sign_files(args: argparse.Namespace, key, cert) -> int:
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.inputs:
        try:
            signed = sign_document(read_input(name), key, cert, utc_now())
        except etree.XMLSyntaxError as exc:
            raise CliError(f"{name} is not well-formed XML: {exc}") from None
        except ValueError as exc:
            raise CliError(f"{name} is not signed: {exc}") from None
        if out_dir:
            (out_dir / Path(name).name).write_bytes(signed)
        else:
            sys.stdout.buffer.write(signed)
    return 0


def verification_report(result) -> dict:
    v = result.voucher
    ident = result.signer.identity
    return {
        "ok": True,
        "voucher_id": v.voucher_id,
        "agency": v.agency_code,
        "fiscal_year": v.fiscal_year,
        "voucher_number": v.voucher_number,
        "revision": v.revision,
        "control_total": v.total_amount,
        "line_count": v.line_count,
        "lines": [{"number": line.number, "amount": line.amount} for line in v.lines],
        "sha256": result.received_sha256,
        "signing_time": result.signing_time.isoformat(),
        "signer": {
            "agency": result.signer.agency,
            "role": result.signer.role.value,
            "grant": result.signer.grant.kind.value,
            "name": ident.common_name,
            "serial": ident.serial_hex,
            "issuer": ident.issuer,
            "subject": ident.subject,
            "key_sha256": ident.key_sha256,
            "id_last_four": ident.id_last_four,
        },
        "revocation": [{"status": a.status.value, "source": a.source, "soft_failed": a.soft_failed}
                       for a in result.certificate.revocation],
    }


def _verify(args: argparse.Namespace) -> int:
    data = read_input(args.input)
    try:
        platform = build_platform(PlatformConfig.from_pki_dir(Path(args.pki), use_ocsp=args.ocsp,
                                                              soft_fail=args.soft_fail))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    try:
        result = check_signed_voucher(data, platform=platform, banks=BankDirectory.shipped(), role=Role(args.role),
                                      now=utc_now())
    except Refusal as refusal:
        if args.json:
            print(json.dumps({"ok": False, "code": refusal.code,
                              "problems": [p.as_dict() for p in refusal.problems]}, ensure_ascii=False))
            return 1
        raise
    report = verification_report(result)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        s = report["signer"]
        print(f"verified: {report['voucher_id']} revision {report['revision']}, {report['line_count']} lines, "
              f"NT${report['control_total']:,}; signed by {s['name']} ({s['role']}, {s['grant']}) "
              f"of {s['agency']}, certificate {s['serial']}")
    if result.revocation_soft_failed:
        print("vgw: warning: revocation status unknown; accepted only because --soft-fail is set", file=sys.stderr)
    return 0


def register(registry) -> None:
    group_help = "validate, sign and verify payment voucher files"
    p = registry.command("voucher", "validate", help="check a voucher against the XSD and business rules",
                         handler=_validate, group_help=group_help)
    p.add_argument("input", metavar="IN", help="voucher XML file, or - for standard input")

    p = registry.command("voucher", "sign", help="sign vouchers (enveloped XAdES-BES)", handler=_sign,
                         group_help=group_help)
    add_signing_arguments(p)
    p.add_argument("--out-dir", help="write signed files here under their own names (needed for several inputs)")
    p.add_argument("inputs", nargs="+", metavar="IN", help="voucher XML file(s), or - for standard input")

    p = registry.command("voucher", "verify", help="validate, verify signature, chain, revocation and role",
                         handler=_verify, group_help=group_help)
    p.add_argument("--pki", required=True, help="PKI folder (trust anchors, registry, CRLs) as `vgw pki init` made")
    p.add_argument("--role", default=Role.PREPARER.value, choices=[r.value for r in Role],
                   help="role the signer must hold for the voucher's agency (default: preparer)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--ocsp", action="store_true", help="also ask the OCSP responder named in the certificate")
    p.add_argument("--soft-fail", action="store_true",
                   help="accept when no revocation source answers (logged); default is to refuse")
    p.add_argument("input", metavar="IN", help="signed voucher XML file, or - for standard input")
