"""``vgw demo``: what ``make demo`` runs — the whole system on one machine, with simulated agencies and bank.

1. A test PKI (GRCA-like root, MOICA-like CA, the gateway, the bank, agencies with five role holders and a
   deputy each) and its OCSP responder as a process of its own. Signed vouchers are checked in-process as
   the gateway checks them, and forgeries are refused with their stable codes (:mod:`simulators.demo.signatures`).
2. The gateway with its bank exchange: on the embedded default ``vgw sim serve`` (SQLite + in-process queues,
   the simulated bank on the other end of the in-process transport); with ``--amqp URL`` ``vgw serve
   --bank-exchange`` and ``vgw sim bank`` as two processes over RabbitMQ, on ``--store`` (e.g. PostgreSQL).
   The allotments are loaded with ``vgw budget load``; the gateway asks the OCSP responder.
3. A simulated business day (:mod:`simulators.agency`) over HTTPS mTLS: vouchers prepared, signed, submitted,
   approved stage by stage (some by the deputy, some sent back and corrected), released, checked by the
   treasury, paid by the bank or returned (退匯) and re-remitted; the bank's faults as asked.
   Probes of refusals through the same gateway (:mod:`simulators.demo.probes`).
4. The gateway and the bank stopped, then ``vgw audit reconcile`` and ``vgw audit verify`` on the store, and
   the bank's ledger read: no EndToEndId booked twice, the lines paid equal the bookings.

It exits 0 only if every voucher of the day reached a final state and all of 1–4 hold. ``--json`` prints the
summary as JSON; ``--out DIR`` keeps the evidence (bank messages sent and received, signed vouchers, actions
and receipts, each agency's statement (對帳單, CSV) as it downloaded it, the audit log, the summaries).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from adapters.command_line import CliError
from simulators.agency import AgencySimulator, format_report
from simulators.agency_plans import Mix, allotments
from simulators.demo.report import DemoReport
from simulators.pki.layout import init_pki
from simulators.served_gateway import ServedGateway, stop_gracefully

BANK_TIMING = {"VGW_BANK_BATCH_SECONDS": "1", "VGW_BANK_RELAY_SECONDS": "0.5", "VGW_BANK_SWEEP_SECONDS": "2"}
"""The demo's bank exchange works in seconds, not the minutes a production day can afford."""


@contextlib.contextmanager
def work_folder(kept: str | None, prefix: str):
    """The folder ``--dir`` names (made if needed, kept), or a temporary one removed at the end."""
    if kept:
        work = Path(kept).resolve()
        work.mkdir(parents=True, exist_ok=True)
        yield work
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _vgw(*args: str) -> list[str]:
    return [sys.executable, "-m", "adapters.cli", *args]


@contextlib.contextmanager
def ocsp_responder(pki_dir: Path, port: int):
    """Run the OCSP responder as its own process, as a CA's would be, until the block ends."""
    proc = subprocess.Popen([sys.executable, "-m", "simulators.pki.ocsp_responder", str(pki_dir), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc, "the OCSP responder")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)  # polling a port, with a deadline


class BankProcess:
    """``vgw sim bank`` over RabbitMQ, ready once it says so; SIGTERM prints its tally as the last log line."""

    def __init__(self, args: list[str], log: Path, ready_timeout: float = 60.0) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(_vgw("sim", "bank", *args), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_timeout
        while "vgw sim bank: ready" not in log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"vgw sim bank did not become ready:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)  # polling the log for the ready line, with a deadline

    def stop(self) -> None:
        stop_gracefully(self.process)  # SIGTERM: it prints its tally as it stops


def last_json_line(log: Path) -> dict:
    """The tally a simulator prints as its last JSON line when it stops; {} if there is none."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith('{"bank"'):
            try:
                return json.loads(line)
            except ValueError:
                return {}
    return {}


def ledger_tally(ledger: Path) -> dict:
    """Bookings per EndToEndId from the bank's ledger file (one ``EndToEndId amount`` line per booking)."""
    counts: collections.Counter = collections.Counter()
    amount = 0
    if ledger.exists():
        for line in ledger.read_text(encoding="utf-8").splitlines():
            if line.strip():
                e2e, value = line.split()
                counts[e2e] += 1
                amount += int(value)
    return {"booked": sum(counts.values()), "booked_twice": sum(1 for n in counts.values() if n > 1),
            "booked_amount": amount}


def audit_json(verb: str, store: str) -> dict:
    done = subprocess.run(_vgw("audit", verb, "--store", store, "--json"), capture_output=True, text=True,
                          timeout=600)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"ok": False, "error": (done.stderr or done.stdout).strip()[-500:]}


def run_demo(work: Path, *, agencies: int = 3, vouchers: int = 240, out: Path | None = None,
             amqp: str | None = None, store: str | None = None, bank_flags: tuple[str, ...] = (),
             topology_prefix: str = "", seed: int = 2026, concurrency: int = 4, progress: bool = False,
             settle_timeout: float = 300.0, ledger: Path | None = None) -> DemoReport:
    started = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    port = _free_port()
    ocsp_url = f"http://127.0.0.1:{port}/ocsp"
    # one agency more than the day's: it plays the forger of part 1, and its revoked deputy stays out of the day
    manifest = init_pki(work / "pki", agencies=agencies + 1, now=now, ocsp_url=ocsp_url)
    pki_dir = Path(manifest["dir"])
    codes = sorted(manifest["agencies"])
    day_agencies, forger = codes[:-1], codes[-1]
    report = DemoReport(str(pki_dir), ocsp_url, mode="amqp" if amqp else "embedded")
    evidence = out or work / "evidence"
    evidence.mkdir(parents=True, exist_ok=True)
    report.evidence = str(evidence) if out else None
    run_tag = uuid.uuid4().hex[:4].upper()
    ledger = ledger or work / "bank-ledger.txt"
    ledger.unlink(missing_ok=True)  # the bank's bookings of this run only

    with ocsp_responder(pki_dir, port):
        from simulators.demo.signatures import check_signatures

        check_signatures(pki_dir, manifest, report, evidence / "part1", genuine_agencies=day_agencies, forger=forger)
        store_url = store or fresh_sqlite(work / "gateway.sqlite3")
        today = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).date()
        if not _load_budget(work, store_url, day_agencies, today, report):
            return _done(report, started)
        env = {**BANK_TIMING, "VGW_BANK_RESEND_SECONDS": "6", "VGW_BANK_TOPOLOGY_PREFIX": topology_prefix}
        bank_args = ["--pki", str(pki_dir), "--ledger", str(ledger), *bank_flags]
        bank = None
        try:
            if amqp:
                bank = BankProcess(["--amqp", amqp, "--topology-prefix", topology_prefix, *bank_args],
                                   work / "bank.log")
                gateway = ServedGateway(pki_dir, store_url, work / "gateway.log", threads=8, extra=(
                    "--ocsp", "--bank-exchange", "--bank-amqp", amqp), env=env)
            else:
                gateway = ServedGateway(pki_dir, store_url, work / "gateway.log", threads=8,
                                        command=("sim", "serve"), extra=("--ocsp", *bank_args[2:]), env=env)
        except RuntimeError as exc:
            if bank is not None:
                bank.stop()
            report.problems.append(str(exc)[-1500:])
            return _done(report, started)
        try:
            sim = AgencySimulator(pki_dir, "127.0.0.1", gateway.port, agencies=day_agencies, seed=seed,
                                  run_tag=run_tag, concurrency=concurrency, poll_seconds=0.5,
                                  mix=Mix(payroll=0.004, payroll_first=True), evidence=evidence / "vouchers")
            day = sim.run(vouchers=vouchers, settle_timeout=settle_timeout, progress=progress)
            report.day = day.as_dict()
            from simulators.demo.probes import run_probes

            run_probes(pki_dir, manifest, day_agencies[0], gateway.port, report, evidence / "probes", today=today,
                       run_tag=run_tag, poll_until=time.monotonic() + 30)
        finally:
            gateway.stop()
            if bank is not None:
                bank.stop()
    tally = last_json_line(work / ("bank.log" if amqp else "gateway.log"))
    report.bank = {**tally.get("bank", {}), **ledger_tally(ledger),
                   "paid_lines": report.day.get("payments", {}).get("paid")}
    report.open_vouchers = open_vouchers(store_url)
    report.reconcile = audit_json("reconcile", store_url)
    report.audit = audit_json("verify", store_url)
    if out is not None:
        from simulators.demo.evidence import export_store

        report.bank["evidence"] = export_store(store_url, out)
        (out / "summary.json").write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=2), "utf-8")
        shutil.copytree(pki_dir, out / "pki", dirs_exist_ok=True)
    return _done(report, started)


FAULT_COUNTS = ("duplicated_reports", "reordered_messages", "dropped_answers", "delayed_messages",
                "malformed_reports", "rejected_files", "downtimes")
"""The bank simulator's tally of the faults it injected (simulators/bank.py BankCounts)."""

NOT_FINAL = ("received", "reviewed", "accountant-approved", "head-approved", "released", "held",
             "treasury-accepted", "batched")


def open_vouchers(store_url: str) -> dict[str, int]:
    """Voucher revisions in the whole store still waiting for someone (a stage, the treasury, the bank)."""
    from adapters.storage.factory import open_store

    store = open_store(store_url)
    try:
        counts = store.queue_counts(list(NOT_FINAL), overdue_before=datetime.date.min)
    finally:
        store.close()
    return {status: n for status, (n, _) in counts.items() if n}


def _done(report: DemoReport, started: float) -> DemoReport:
    report.seconds = time.monotonic() - started
    return report


def fresh_sqlite(path: Path) -> str:
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)  # a kept --dir: a fresh store each run
    return f"sqlite:///{path}"


def _load_budget(work: Path, store_url: str, agencies: list[str], today: datetime.date, report: DemoReport) -> bool:
    from simulators.demo.probes import scarce_allotment

    problem = load_allotments(work, store_url, allotments(agencies, today) + [scarce_allotment(agencies[0], today)])
    if problem:
        report.problems.append(problem)
    return problem is None


def load_allotments(work: Path, store_url: str, rows: list[tuple[str, int, str, int]]) -> str | None:
    """Load ``rows`` with ``vgw budget load``, as the city's budget office would; why it failed, or None."""
    import csv

    csv_file = work / "allotments.csv"
    with open(csv_file, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("agency", "fiscal_year", "budget_subject", "amount"))
        writer.writerows(rows)
    loaded = subprocess.run(_vgw("budget", "load", "--store", store_url, "--operator", "vgw-sim", str(csv_file)),
                            capture_output=True, text=True, timeout=600)
    if loaded.returncode != 0:
        return f"vgw budget load failed: {(loaded.stderr or loaded.stdout).strip()[-500:]}"
    return None


def print_report(report: DemoReport) -> None:
    d = report.as_dict()
    print(f"voucher-gateway demo ({'RabbitMQ + ' + 'the given store' if report.mode == 'amqp' else 'embedded: SQLite + in-process queues'})"
          f" — PKI in {report.pki_dir}, OCSP responder at {report.ocsp_url}")
    width = max((len(o.name) for o in report.outcomes), default=10)

    def outcomes(part: str, title: str) -> None:
        shown = [o for o in report.outcomes if o.part == part]
        if shown:
            print(f"\n{title}")
        for o in shown:
            mark = "ok " if o.ok else "BAD"
            got = o.got if o.ok else f"{o.got} (expected {o.expected})"
            print(f"  [{mark}] {o.name:<{width}}  {got:<24} {o.detail[:90]}")

    outcomes("in-process", "1. signed vouchers verified in-process (chain, OCSP, role registry, rules); forgeries refused")
    if report.day:
        print("\n2. a business day through the gateway over HTTPS mTLS (five signed stages, bank, returns re-remitted)")
        print("  " + format_report(report.day).replace("\n", "\n  "))
    outcomes("gateway", "3. refusals through the running gateway (each changes nothing)")
    if report.bank:
        b = report.bank
        faults = ", ".join(f"{k.replace('_', ' ')} {b[k]}" for k in FAULT_COUNTS if b.get(k))
        print(f"\n4. the bank: {b.get('booked', 0):,} payments booked (NT${b.get('booked_amount', 0):,}), "
              f"{b.get('booked_twice')} booked twice; {b.get('messages', '?')} transfer messages"
              + (f"; faults injected: {faults}" if faults else ""))
    if report.reconcile:
        r = report.reconcile
        print(f"   reconcile: {'OK' if r.get('ok') else 'FAILED: ' + str(r.get('discrepancy') or r.get('error'))}"
              + (f" — {r.get('vouchers')} vouchers, {r.get('lines')} lines, NT${r.get('amount', 0):,}" if r.get("ok") else ""))
    print(f"   vouchers still open in the store: {report.open_vouchers or 'none'}")
    if report.audit:
        a = report.audit
        print(f"   audit chain: {'OK, ' + str(a.get('checked')) + ' entries' if a.get('ok') else 'BROKEN: ' + str(a)}")
    for problem in report.problems:
        print(f"\nPROBLEM: {problem}")
    if report.evidence:
        print(f"\nevidence kept in {report.evidence}")
    verdict = ("every voucher final, the money reconciled, nothing booked twice" if report.ok
               else "SOMETHING WAS NOT AS EXPECTED (see above)")
    print(f"\n{verdict}; done in {d['seconds']:.1f} s")


def _demo(args: argparse.Namespace) -> int:

    if args.agencies < 1 or args.vouchers < 1:
        raise CliError("the demo needs --agencies and --vouchers of at least 1")
    if args.store and not args.amqp and not args.store.startswith("sqlite:"):
        raise CliError("--store postgresql://… needs --amqp (the embedded default is SQLite + in-process queues)")
    out = Path(args.out).resolve() if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    options = dict(agencies=args.agencies, vouchers=args.vouchers, out=out, amqp=args.amqp, store=args.store,
                   bank_flags=tuple(bank_flags(args)), topology_prefix=args.topology_prefix, seed=args.seed,
                   ledger=Path(args.ledger).resolve() if args.ledger else None,
                   concurrency=args.concurrency, settle_timeout=args.settle_timeout,
                   progress=not args.json and sys.stderr.isatty())
    with work_folder(args.dir, "vgw-demo-") as work:
        report = run_demo(work, **options)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print_report(report)
    return 0 if report.ok else 1


_BANK_DESTS: list[tuple[str, str, object]] = []
"""(dest, option, default) of the bank simulator's options the demo passes on to it."""


def bank_flags(args: argparse.Namespace) -> list[str]:
    """The bank simulator's options given to the demo, as command-line flags for ``vgw sim bank/serve``."""
    flags = []
    for dest, option, default in _BANK_DESTS:
        value = getattr(args, dest, default)
        if value == default:
            continue
        if value is True:
            flags.append(option)
        elif value is not False and value is not None:
            flags += [option, str(value)]
    return flags


def register(registry) -> None:
    p = registry.command(None, "demo", help="run the whole system on one machine: PKI, gateway, OCSP, bank and "
                         "agency simulators, a business day; exit 0 only if every voucher is final and the money "
                         "reconciles", handler=_demo)
    p.add_argument("--dir", help="work folder to keep (default: a temporary one)")
    p.add_argument("--out", help="keep the evidence here: bank messages, vouchers, actions, receipts, audit log")
    p.add_argument("--agencies", type=int, default=3, help="agencies in the business day (default 3)")
    p.add_argument("--vouchers", type=int, default=240, help="vouchers in the business day (default 240)")
    p.add_argument("--concurrency", type=int, default=4, help="agency API calls in flight (default 4)")
    p.add_argument("--settle-timeout", type=float, default=300.0,
                   help="seconds to wait for the day's vouchers to become final (default 300)")
    p.add_argument("--amqp", metavar="URL", help="run the bank link over RabbitMQ (with --store for the store)")
    p.add_argument("--store", metavar="URL", help="the gateway's store (default: SQLite in the work folder)")
    p.add_argument("--topology-prefix", default="", help="with --amqp: prefix of the bank exchange and queues")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    before = {a.dest for a in p._actions}
    from simulators.bank import add_bank_arguments

    add_bank_arguments(p)  # --seed seeds the agencies' day as well as the bank
    _BANK_DESTS.clear()
    _BANK_DESTS.extend((a.dest, a.option_strings[0], a.default) for a in p._actions
                       if a.dest not in before and a.option_strings and a.dest != "ledger")
