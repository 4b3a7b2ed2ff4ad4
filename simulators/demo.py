"""``vgw demo``: what ``make demo`` runs — the signed-voucher core and the gateway, for real, on one machine.

Part 1, in-process: a test PKI with a running OCSP responder, agencies' vouchers prepared, signed and
verified (chain, OCSP/CRL, role registry, business rules), and forgeries refused with their stable error codes.

Part 2, the approval workflow through a real ``vgw serve`` on the embedded default (SQLite in the demo's work
folder): allotments loaded with ``vgw budget load``, then over mTLS as the agency's system a few vouchers
submitted and taken through reviewer, accountant, head and releaser with signed actions (each naming the
SHA-256 of the previous signed document) to ``treasury-accepted``; one sent back by the accountant
(``amount-wrong``), corrected as revision 2 and approved; one over its allotment sent back by the treasury
check (``budget-exceeded``); one action out of order refused (``action-out-of-order``).

It exits 0 only if every outcome in the table is the expected one.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from gateway.actions import Action, Decision, Reason, ReasonCode, action_element
from gateway.bank_directory import BankDirectory
from gateway.errors import Refusal
from gateway.roles import Role
from gateway.signing import sign_document
from gateway.voucher_check import check_signed_voucher
from gateway.voucher_xml import voucher_to_xml
from gateway.workflow import Actor

from .mtls_load import Connection
from .pki.layout import init_pki, load_cert, load_key, revoke
from .served_gateway import ServedGateway
from .voucher_factory import VoucherFactory


@dataclass
class Outcome:
    name: str
    expected: str  # "accepted" or an error code
    got: str
    detail: str = ""
    part: str = "in-process"  # or "gateway": the approval workflow through `vgw serve`

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
        signed = [o for o in self.outcomes if o.part == "in-process"]
        return {
            "ok": self.ok, "pki_dir": self.pki_dir, "ocsp_url": self.ocsp_url, "seconds": round(self.seconds, 2),
            "accepted": sum(1 for o in signed if o.got == "accepted"),
            "refused": sum(1 for o in signed if o.got != "accepted"),
            "payments_accepted": self.payments, "amount_accepted": self.amount,
            "workflow": sum(1 for o in self.outcomes if o.part == "gateway"),
            "outcomes": [{"name": o.name, "expected": o.expected, "got": o.got, "ok": o.ok, "detail": o.detail,
                          "part": o.part} for o in self.outcomes],
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

    run_workflow(work, pki_dir, manifest, factory, codes[0], report, signed_dir / "workflow")
    report.seconds = time.monotonic() - started
    if out is not None:
        shutil.copytree(pki_dir, out / "pki", dirs_exist_ok=True)
    return report


AMPLE_SUBJECT, SCARCE_SUBJECT = "1010101010", "2020202020"
"""The budget subjects of part 2: one allotted what its vouchers total, one allotted NT$ 1."""
STAGES = (Actor.REVIEWER, Actor.ACCOUNTANT, Actor.HEAD, Actor.RELEASER)


def run_workflow(work: Path, pki_dir: Path, manifest: dict, factory: VoucherFactory, agency: str,
                 report: DemoReport, evidence: Path) -> None:
    """Part 2: the approval workflow through a real ``vgw serve`` on SQLite in ``work``, as ``agency``'s system."""
    evidence.mkdir(parents=True, exist_ok=True)
    today = datetime.datetime.now(datetime.timezone.utc).date()
    people = manifest["agencies"][agency]["people"]
    signers = {role: (load_key(Path(e["key"])), load_cert(Path(e["cert"]))) for role, e in people.items()}

    def sign(data, role: str) -> bytes:
        at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)  # Action and XAdES time alike
        return sign_document(data, *signers[role], at)

    def new_voucher(subject: str):
        return replace(factory.voucher(agency, today=today), budget_subject=subject)

    ample = [new_voucher(AMPLE_SUBJECT) for _ in range(4)]  # three approved, one sent back and corrected
    corrected = factory.correction(ample[3])
    scarce = new_voucher(SCARCE_SUBJECT)
    allotments = {(agency, ample[0].fiscal_year, AMPLE_SUBJECT): sum(v.total_amount for v in ample[:3] + [corrected]),
                  (agency, scarce.fiscal_year, SCARCE_SUBJECT): 1}

    store_file = work / "gateway.sqlite3"
    for leftover in (store_file, Path(f"{store_file}-wal"), Path(f"{store_file}-shm")):
        leftover.unlink(missing_ok=True)  # a kept --dir: the same voucher ids again, a fresh store
    store = f"sqlite:///{store_file}"
    csv_file = work / "allotments.csv"
    csv_file.write_text("agency,fiscal_year,budget_subject,amount\n" + "".join(
        f"{a},{y},{s},{amount}\n" for (a, y, s), amount in sorted(allotments.items())), encoding="utf-8")
    loaded = subprocess.run([sys.executable, "-m", "adapters.cli", "budget", "load", "--store", store,
                             "--operator", "vgw-demo", str(csv_file)], capture_output=True, text=True, timeout=60)
    report.outcomes.append(Outcome("budget-load", "loaded", "loaded" if loaded.returncode == 0 else "failed",
                                   f"{len(allotments)} allotments" if loaded.returncode == 0
                                   else (loaded.stderr or loaded.stdout).strip()[-200:], "gateway"))
    if loaded.returncode != 0:
        return

    try:
        gateway = ServedGateway(pki_dir, store, work / "serve.log", threads=4, ready_timeout=60)
    except RuntimeError as exc:
        report.outcomes.append(Outcome("vgw-serve", "ready", "failed", str(exc)[-300:], "gateway"))
        return
    try:
        tls = pki_dir / "agencies" / agency / "tls"
        client = Connection(port=gateway.port, cafile=str(pki_dir / "root/cert.pem"), cert=str(tls / "cert.pem"),
                            key=str(tls / "key.pem"), timeout=30)

        def get(path: str) -> dict:
            conn = http.client.HTTPSConnection("127.0.0.1", gateway.port, context=client.context, timeout=30)
            try:
                conn.request("GET", path)
                reply = conn.getresponse()
                body = reply.read()
            finally:
                conn.close()
            return json.loads(body) if reply.status == 200 else {"status": f"http-{reply.status}", "history": []}

        def code_of(status: int, body: bytes) -> str:
            if status == 202:
                return "accepted"
            try:
                return json.loads(body)["code"]
            except (ValueError, KeyError, TypeError):
                return f"http-{status}"

        def submit(voucher) -> bytes | None:
            data = sign(voucher_to_xml(voucher), "preparer")
            (evidence / f"{voucher.voucher_id}-r{voucher.revision}.xml").write_bytes(data)
            status, body = client.post("/v1/vouchers", data)
            if status != 202:
                report.outcomes.append(Outcome(f"submit-{voucher.voucher_id}-r{voucher.revision}", "accepted",
                                               code_of(status, body), body[:200].decode(errors="replace"), "gateway"))
                return None
            return data

        def act(voucher, voucher_data: bytes, previous: bytes, stage: Actor, reason: Reason | None = None):
            """(HTTP status, answer, the signed action) for ``stage`` on ``voucher``, chained to ``previous``."""
            at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
            action = Action(voucher_id=voucher.voucher_id, revision=voucher.revision,
                            voucher_sha256=hashlib.sha256(voucher_data).hexdigest(),
                            previous_sha256=hashlib.sha256(previous).hexdigest(), stage=stage,
                            decision=Decision.APPROVE if reason is None else Decision.REJECT,
                            signing_time=at, reason=reason)
            data = sign_document(action_element(action), *signers[stage.value], at)
            (evidence / f"{voucher.voucher_id}-r{voucher.revision}-{stage.value}.xml").write_bytes(data)
            status, body = client.post(f"/v1/vouchers/{voucher.voucher_id}/actions", data)
            return status, body, data

        def through_stages(voucher, voucher_data: bytes, previous: bytes, stages=STAGES) -> str | None:
            """Post each stage's approval; None when all were accepted, else the first refusal's code."""
            for stage in stages:
                status, body, previous = act(voucher, voucher_data, previous, stage)
                if status != 202:
                    return f"{stage.value}: {code_of(status, body)}"
            return None

        def ended(name: str, voucher, expected: str, failure: str | None, note: str = "") -> None:
            state = get(f"/v1/vouchers/{voucher.voucher_id}")
            history = state.get("history", [])
            got = state.get("status", "?")
            last_reason = history[-1].get("reason_code") if history else None
            if got == "rejected" and last_reason:
                got = f"rejected/{last_reason}"
            trail = " → ".join(item["role"] for item in history if item.get("revision", voucher.revision)
                               == voucher.revision)
            detail = failure or f"{note}NT${voucher.total_amount:,}, {trail}"
            report.outcomes.append(Outcome(name, expected, got, detail, "gateway"))

        for i, voucher in enumerate(ample[:3]):
            data = submit(voucher)
            if data is None:
                continue
            if i == 0:  # the accountant before the reviewer: refused, and the voucher is unchanged
                status, body, _ = act(voucher, data, data, Actor.ACCOUNTANT)
                report.outcomes.append(Outcome("accountant-before-reviewer", "action-out-of-order",
                                               code_of(status, body), f"HTTP {status} on {voucher.voucher_id}",
                                               "gateway"))
            ended(f"approved-{i + 1}", voucher, "treasury-accepted", through_stages(voucher, data, data))

        sent_back = ample[3]
        data = submit(sent_back)
        if data is not None:
            failure = None
            status, body, reviewed = act(sent_back, data, data, Actor.REVIEWER)
            if status != 202:
                failure = f"reviewer: {code_of(status, body)}"
            else:
                status, body, _ = act(sent_back, data, reviewed, Actor.ACCOUNTANT,
                                      Reason(ReasonCode.AMOUNT_WRONG, "第 1 行金額與契約不符"))
                failure = None if status == 202 else f"accountant: {code_of(status, body)}"
            ended("accountant-sends-back", sent_back, "rejected/amount-wrong", failure, "revision 1, ")
            data = submit(corrected)
            if data is not None:
                ended("corrected-revision-2", corrected, "treasury-accepted", through_stages(corrected, data, data),
                      "revision 2, ")

        data = submit(scarce)
        if data is not None:
            ended("over-budget", scarce, "rejected/budget-exceeded", through_stages(scarce, data, data),
                  "allotted NT$1, ")
        client.close()
    finally:
        gateway.stop()


def print_report(report: DemoReport) -> None:
    width = max(len(o.name) for o in report.outcomes)
    print(f"voucher-gateway demo — PKI in {report.pki_dir}, OCSP responder at {report.ocsp_url}")
    titles = {"in-process": "1. signed vouchers verified in-process",
              "gateway": "2. the approval workflow through `vgw serve` (SQLite), over mTLS"}
    part = None
    for o in report.outcomes:
        if o.part != part:
            part = o.part
            print(f"\n{titles.get(part, part)}")
        mark = "ok " if o.ok else "BAD"
        shown = o.got if o.ok else f"{o.got} (expected {o.expected})"
        print(f"  [{mark}] {o.name:<{width}}  {shown:<24} {o.detail}")
    d = report.as_dict()
    print(f"\n{d['accepted']} vouchers accepted ({report.payments} payments, NT${report.amount:,}), "
          f"{d['refused']} refused with the expected codes; {d['workflow']} workflow outcomes as expected"
          if report.ok else "\nSOME OUTCOMES WERE NOT AS EXPECTED")
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
