"""``vgw action sign`` and ``vgw action submit``: what a reviewer's, accountant's, head's or releaser's tool does.

``sign`` writes one signed action (schemas/action.xsd) binding the decision to the voucher's exact bytes
and to the previous signed document of the chain: the voucher file itself for the reviewer, else the
previous stage's action file (``--previous``). Given a voucher id instead of a file, the voucher's digest
and revision come from the previous action, which already names them.

``submit`` posts a signed action to the gateway over HTTPS with the agency system's TLS certificate and
prints the receipt (or the problem document), exiting non-zero on a refusal.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import re
import ssl
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

from lxml import etree

from adapters.cli.signing_key import add_signing_arguments, signing_material
from adapters.cli.voucher import read_input
from adapters.clock import utc_now
from adapters.command_line import CliError
from adapters.pki_manifest import read_pki_manifest
from gateway.errors import Refusal
from gateway.vouchers.xml_mapping import read_voucher
from gateway.workflow.actions import ACTION_STAGES, Action, Decision, Reason, ReasonCode, action_element
from gateway.workflow.actions import NS as ACTION_NS
from gateway.workflow.transitions import Actor
from gateway.xmlsec.parsing import parse_untrusted
from gateway.xmlsec.signing import sign_document

_VOUCHER_ID = re.compile(r"[0-9]{9}[A-Z0-9]-[0-9]{3}-[0-9A-Z]{1,12}\Z")


def _previous_action(path: str) -> tuple[bytes, etree._Element]:
    data = read_input(path)
    try:
        root = parse_untrusted(data)
    except Refusal as refusal:
        raise CliError(f"{path}: {refusal}") from None
    if root.tag != f"{{{ACTION_NS}}}Action":
        raise CliError(f"{path}: not an action document")
    return data, root


def _field(root: etree._Element, name: str) -> str:
    node = root.find(f"{{{ACTION_NS}}}{name}")
    if node is None or not node.text:
        raise CliError(f"the previous action has no {name}")
    return node.text.strip()


def _subject(args: argparse.Namespace) -> tuple[str, int, str, str]:
    """(voucher id, revision, voucher SHA-256, previous SHA-256) from --voucher and --previous."""
    previous = _previous_action(args.previous) if args.previous else None
    if _VOUCHER_ID.match(args.voucher) and not Path(args.voucher).exists():
        if previous is None:
            raise CliError("with a voucher id, give --previous ACTION_FILE (the reviewer signs over the voucher "
                             "file itself: give the file)")
        data, root = previous
        if _field(root, "VoucherId") != args.voucher:
            raise CliError(f"the previous action is about {_field(root, 'VoucherId')}, not {args.voucher}")
        return args.voucher, int(_field(root, "Revision")), _field(root, "VoucherSha256"), hashlib.sha256(data).hexdigest()
    body = read_input(args.voucher)
    try:
        voucher = read_voucher(parse_untrusted(body))
    except Refusal as refusal:
        raise CliError(f"{args.voucher}: {refusal}") from None
    except (ValueError, TypeError, AttributeError):
        raise CliError(f"{args.voucher}: not a voucher document") from None
    voucher_sha256 = hashlib.sha256(body).hexdigest()
    if previous is None:
        return voucher.voucher_id, voucher.revision, voucher_sha256, voucher_sha256
    data, root = previous
    if _field(root, "VoucherSha256") != voucher_sha256:
        raise CliError("the previous action is about other voucher bytes than this file")
    return voucher.voucher_id, voucher.revision, voucher_sha256, hashlib.sha256(data).hexdigest()


def _sign(args: argparse.Namespace) -> int:
    voucher_id, revision, voucher_sha256, previous_sha256 = _subject(args)
    reason, decision = None, Decision.APPROVE
    if args.reject is not None or args.cancel:
        if not args.reason or not args.reason.strip():
            raise CliError("a rejection or cancellation needs --reason TEXT")
        code = ReasonCode(args.reject) if args.reject is not None else ReasonCode.WITHDRAWN
        reason, decision = Reason(code, args.reason.strip()), (Decision.CANCEL if args.cancel else Decision.REJECT)
    elif args.reason:
        raise CliError("--reason goes with --reject or --cancel")
    now = utc_now().replace(microsecond=0)
    try:
        action = Action(voucher_id=voucher_id, revision=revision, voucher_sha256=voucher_sha256,
                        previous_sha256=previous_sha256, stage=Actor(args.stage),
                        decision=decision, signing_time=now, reason=reason)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    with signing_material(args) as (key, cert):
        signed = sign_document(action_element(action), key, cert, now)
    if args.out == "-":
        sys.stdout.buffer.write(signed)
    else:
        Path(args.out).write_bytes(signed)
        print(f"{args.out}: {action.decision.value} of {voucher_id} revision {revision} at the {args.stage} stage, "
              f"SHA-256 {hashlib.sha256(signed).hexdigest()}")
    return 0


def _tls_files(args: argparse.Namespace) -> tuple[str, str, str]:
    """(client cert, client key, CA file): given outright, or from a `vgw pki init` folder and an agency."""
    if args.pki:
        try:
            manifest = read_pki_manifest(args.pki)
            agencies = manifest["agencies"]
            agency = args.agency or next(iter(agencies))
            tls = agencies[agency]["tls"]
            return args.tls_cert or tls["cert"], args.tls_key or tls["key"], args.ca or manifest["root"]["cert"]
        except (OSError, ValueError, KeyError, StopIteration) as exc:
            raise CliError(f"cannot read the agency's TLS files from {args.pki}: {exc!r}") from None
    if not (args.tls_cert and args.tls_key and args.ca):
        raise CliError("give --tls-cert, --tls-key and --ca, or --pki DIR [--agency CODE]")
    return args.tls_cert, args.tls_key, args.ca


def _submit(args: argparse.Namespace) -> int:
    body = read_input(args.action)
    try:
        root = parse_untrusted(body)
        voucher_id = _field(root, "VoucherId")
    except Refusal as refusal:
        raise CliError(f"{args.action}: {refusal}") from None
    url = urlsplit(args.gateway)
    if url.scheme != "https" or not url.hostname:
        raise CliError("--gateway must be an https:// URL")
    tls_cert, tls_key, ca = _tls_files(args)
    try:
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(tls_cert, tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot load the TLS files: {exc}") from None
    conn = http.client.HTTPSConnection(url.hostname, url.port or 443, context=context, timeout=args.timeout)
    try:
        conn.request("POST", f"/v1/vouchers/{quote(voucher_id, safe='')}/actions", body,
                     {"Content-Type": "application/xml"})
        response = conn.getresponse()
        answer = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise CliError(f"cannot reach {args.gateway}: {exc}") from None
    finally:
        conn.close()
    if response.status in (200, 202):
        if args.receipt:
            Path(args.receipt).write_bytes(answer)
        else:
            sys.stdout.buffer.write(answer)
        return 0
    try:
        problem = json.loads(answer)
        print(f"vgw: refused ({response.status} {problem.get('code')}): {problem.get('detail')}", file=sys.stderr)
    except ValueError:
        print(f"vgw: refused ({response.status})", file=sys.stderr)
    return 1


def register(registry) -> None:
    group_help = "sign and submit approval actions (覆核, 會計主管, 首長, 放行, treasury)"
    p = registry.command("action", "sign", help="sign an approval, rejection or withdrawal of one voucher revision",
                         handler=_sign, group_help=group_help)
    add_signing_arguments(p)
    p.add_argument("--voucher", required=True, metavar="FILE_OR_ID",
                   help="the signed voucher file as submitted, or its id together with --previous")
    p.add_argument("--stage", required=True, choices=[stage.value for stage in ACTION_STAGES])
    decision = p.add_mutually_exclusive_group(required=True)
    decision.add_argument("--approve", action="store_true", help="approve at this stage")
    decision.add_argument("--reject", metavar="CODE", choices=[code.value for code in ReasonCode],
                          help="send back (退件) with this reason code")
    decision.add_argument("--cancel", action="store_true",
                          help="withdraw the voucher (撤回; --stage preparer, before release or instead of a correction)")
    p.add_argument("--reason", metavar="TEXT", help="why, with --reject or --cancel")
    p.add_argument("--previous", metavar="ACTION_FILE", help="the previous stage's signed action (all but the reviewer)")
    p.add_argument("--out", default="-", help="where to write the signed action (default: standard output)")

    p = registry.command("action", "submit", help="post a signed action to the gateway and print the receipt",
                         handler=_submit, group_help=group_help)
    p.add_argument("--gateway", required=True, help="https://HOST:PORT of the gateway")
    p.add_argument("--tls-cert", help="the agency system's TLS client certificate (PEM)")
    p.add_argument("--tls-key", help="its private key (PEM)")
    p.add_argument("--ca", help="CA certificate(s) to trust for the gateway (PEM)")
    p.add_argument("--pki", help="for testers: take the TLS files from this `vgw pki init` folder")
    p.add_argument("--agency", help="with --pki: whose TLS certificate (default: the first agency)")
    p.add_argument("--receipt", help="write the receipt here instead of standard output")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("action", metavar="ACTION_FILE", help="signed action XML, or - for standard input")

