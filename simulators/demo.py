"""``vgw demo``: what ``make demo`` runs — the signed-voucher core, for real, on one machine.

Until the gateway service and the simulators land it shows the foundation: a test PKI with a running
OCSP responder, agencies' vouchers prepared, signed and verified (chain, OCSP/CRL, role registry,
business rules), and forgeries refused with their stable error codes. It exits 0 only if every genuine
voucher was accepted and every forgery refused with the expected code.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from gateway.bank_directory import BankDirectory
from gateway.errors import Refusal
from gateway.roles import Role
from gateway.signing import sign_document
from gateway.voucher_check import check_signed_voucher
from gateway.voucher_xml import voucher_to_xml

from .pki.layout import init_pki, load_cert, load_key, revoke
from .voucher_factory import VoucherFactory


@dataclass
class Outcome:
    name: str
    expected: str  # "accepted" or an error code
    got: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.expected == self.got


@dataclass
class DemoReport:
    pki_dir: str
    ocsp_url: str
    outcomes: list[Outcome] = field(default_factory=list)
    payments: int = 0
    amount: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.outcomes) and all(o.ok for o in self.outcomes)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok, "pki_dir": self.pki_dir, "ocsp_url": self.ocsp_url, "seconds": round(self.seconds, 2),
            "accepted": sum(1 for o in self.outcomes if o.got == "accepted"),
            "refused": sum(1 for o in self.outcomes if o.got != "accepted"),
            "payments_accepted": self.payments, "amount_accepted": self.amount,
            "outcomes": [{"name": o.name, "expected": o.expected, "got": o.got, "ok": o.ok, "detail": o.detail}
                         for o in self.outcomes],
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ocsp_responder(pki_dir: Path, port: int):
    """Run the OCSP responder as its own process, as a CA's would be, until the block ends."""
    proc = subprocess.Popen([sys.executable, "-m", "simulators.pki.ocsp_responder", str(pki_dir), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the OCSP responder did not start") from None
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_demo(work: Path, *, agencies: int = 3, vouchers: int = 5, payroll_lines: int = 200,
             out: Path | None = None) -> DemoReport:
    from adapters.bootstrap import PlatformConfig, build_platform

    started = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    port = _free_port()
    ocsp_url = f"http://127.0.0.1:{port}/ocsp"
    manifest = init_pki(work / "pki", agencies=agencies, now=now, ocsp_url=ocsp_url)
    pki_dir = Path(manifest["dir"])
    banks = BankDirectory.shipped()
    factory = VoucherFactory(banks, seed=2026)
    report = DemoReport(str(pki_dir), ocsp_url)
    signed_dir = (out or work) / "vouchers"
    signed_dir.mkdir(parents=True, exist_ok=True)
    codes = sorted(manifest["agencies"])

    def person(agency: str, role: str):
        entry = manifest["agencies"][agency]["people"][role]
        return load_key(Path(entry["key"])), load_cert(Path(entry["cert"]))

    def sign(voucher_or_bytes, agency: str, role: str = "preparer") -> bytes:
        key, cert = person(agency, role)
        data = voucher_or_bytes if isinstance(voucher_or_bytes, bytes) else voucher_to_xml(voucher_or_bytes)
        return sign_document(data, key, cert, now)

    with ocsp_responder(pki_dir, port):
        platform = build_platform(PlatformConfig.from_pki_dir(pki_dir, use_ocsp=True))

        def check(name: str, data: bytes, expected: str, role: Role = Role.PREPARER) -> None:
            (signed_dir / f"{name}.xml").write_bytes(data)
            try:
                result = check_signed_voucher(data, platform=platform, banks=banks, role=role,
                                              now=datetime.datetime.now(datetime.timezone.utc))
            except Refusal as refusal:
                report.outcomes.append(Outcome(name, expected, refusal.code, refusal.message))
                return
            report.outcomes.append(Outcome(name, expected, "accepted",
                                           f"{len(result.voucher.lines)} lines, NT${result.voucher.total_amount:,}, "
                                           f"signed by {result.signer.identity.common_name}"))
            report.payments += len(result.voucher.lines)
            report.amount += result.voucher.total_amount

        for agency in codes:
            for _ in range(vouchers):
                voucher = factory.voucher(agency, today=now.date())
                check(voucher.voucher_id, sign(voucher, agency), "accepted")
            payroll = factory.voucher(agency, today=now.date(), lines=payroll_lines, payroll=True)
            check(f"{payroll.voucher_id}-payroll", sign(payroll, agency), "accepted")
        deputy = factory.voucher(codes[0], today=now.date())
        check("deputy-reviews", sign(deputy, codes[0], "deputy"), "accepted", Role.REVIEWER)

        a, b = codes[0], codes[1 % len(codes)]
        genuine = factory.voucher(a, today=now.date(), lines=2)
        signed = sign(genuine, a)
        first = genuine.lines[0]
        check("tampered-amount", signed.replace(f"<Amount>{first.amount}</Amount>".encode(),
                                                f"<Amount>{first.amount + 100000}</Amount>".encode(), 1),
              "signature-invalid")
        check("tampered-account", signed.replace(first.account_number.encode(), b"99999999999", 1),
              "signature-invalid")
        if b != a:
            check("other-agency-signer", sign(genuine, b), "signer-not-authorised")
        check("wrong-role", sign(genuine, a, "reviewer"), "signer-not-authorised")
        bad_id = replace(genuine, lines=(first._replace(payee_id=first.payee_id[:-1] +
                                                        str((int(first.payee_id[-1]) + 1) % 10)),) + genuine.lines[1:])
        check("payee-id-checksum", sign(bad_id, a), "payee-id-invalid")
        check("dtd-entity-bomb", b'<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaaaaaaaa">'
              b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><v>&b;</v>', "xml-forbidden-construct")
        # A deputy whose card is reported lost before they ever sign: OCSP answers revoked. (A certificate
        # already seen stays cached as good until its answer's nextUpdate, as with any OCSP client.)
        revoked_cert = load_cert(Path(manifest["agencies"][b]["people"]["deputy"]["cert"]))
        revoke(pki_dir, revoked_cert, now=now)
        check("revoked-signer", sign(factory.voucher(b, today=now.date()), b, "deputy"), "certificate-revoked",
              Role.REVIEWER)

    report.seconds = time.monotonic() - started
    if out is not None:
        shutil.copytree(pki_dir, out / "pki", dirs_exist_ok=True)
    return report


def print_report(report: DemoReport) -> None:
    width = max(len(o.name) for o in report.outcomes)
    print(f"voucher-gateway demo — PKI in {report.pki_dir}, OCSP responder at {report.ocsp_url}\n")
    for o in report.outcomes:
        mark = "ok " if o.ok else "BAD"
        print(f"  [{mark}] {o.name:<{width}}  {o.got:<24} {o.detail}")
    d = report.as_dict()
    print(f"\n{d['accepted']} vouchers accepted ({report.payments} payments, NT${report.amount:,}), "
          f"{d['refused']} refused with the expected codes" if report.ok else "\nSOME OUTCOMES WERE NOT AS EXPECTED")
    print(f"done in {report.seconds:.1f} s")


def _demo(args: argparse.Namespace) -> int:
    from adapters.cli import CliError

    if args.agencies < 2 or args.vouchers < 1:
        raise CliError("the demo needs --agencies of at least 2 and --vouchers of at least 1")
    out = Path(args.out).resolve() if args.out else None
    if args.dir:
        work = Path(args.dir).resolve()
        work.mkdir(parents=True, exist_ok=True)
        report = run_demo(work, agencies=args.agencies, vouchers=args.vouchers, out=out)
    else:
        with tempfile.TemporaryDirectory(prefix="vgw-demo-") as tmp:
            report = run_demo(Path(tmp), agencies=args.agencies, vouchers=args.vouchers, out=out)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print_report(report)
    return 0 if report.ok else 1


def register(registry) -> None:
    p = registry.command(None, "demo", help="run the end-to-end demo on the embedded default", handler=_demo)
    p.add_argument("--dir", help="work folder to keep (default: a temporary one)")
    p.add_argument("--out", help="keep the evidence here: signed vouchers and the PKI")
    p.add_argument("--agencies", type=int, default=3)
    p.add_argument("--vouchers", type=int, default=5, help="ordinary vouchers per agency (plus one payroll)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
