"""``vgw sim year``: the year in a box — 401 agencies, ~150,000 vouchers carrying ~630,000 payments, every one
through the five signed stages and the bank, on this machine, over the wire.

The same parts as ``vgw demo`` (:mod:`simulators.demo.run`), at the city's scale: a PKI for every agency (setup,
timed apart: ``--pki DIR`` reuses one), the allotments, the gateway with its bank exchange (``vgw sim serve`` on
the embedded default, or ``vgw serve --bank-exchange`` + ``vgw sim bank`` with ``--amqp`` and ``--store``), and
the agency simulator with the city's mix: vendor payments of 1–5 lines, subsidies of 5–30, and payrolls of
100–800 lines in the share that brings the average to ~4.2 payments per voucher (630,000 / 150,000).

``--scale F`` runs that fraction of the year (the same mix, ``F × 150,000`` vouchers) and projects the full
year's wall time from the measured throughput; ``--scale 1`` is the real thing. It reports, as JSON: wall
time, CPU seconds of the gateway and of the agencies (whose signing is part of the year), throughput per
stage (vouchers submitted, actions approved, payments paid per second), peak RSS of both, and the checks of
the demo (every voucher final, reconciled, nothing booked twice).
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import sys
import time
import uuid
from pathlib import Path

from adapters.command_line import CliError
from adapters.pki_manifest import read_pki_manifest
from simulators.agency import AgencySimulator
from simulators.agency_plans import Mix, allotments
from simulators.demo.run import (
    BANK_TIMING,
    BankProcess,
    audit_json,
    fresh_sqlite,
    last_json_line,
    ledger_tally,
    load_allotments,
    open_vouchers,
    work_folder,
)
from simulators.pki.layout import init_pki
from simulators.served_gateway import ServedGateway

YEAR_VOUCHERS = 150_000
YEAR_PAYMENTS = 630_000
AGENCIES = 401
YEAR_MIX = Mix(payroll=0.0017, subsidy=0.03, deputy=0.05, send_back=0.02)
"""Average lines: 0.9683 × 3 (vendor) + 0.03 × 17.5 (subsidy) + 0.0017 × 450 (payroll) ≈ 4.2."""
TARGET_SECONDS = 15 * 60


def run_year(work: Path, *, scale: float, agencies: int = AGENCIES, pki: Path | None = None, amqp: str | None = None,
             store: str | None = None, concurrency: int = 8, seed: int = 2027, return_rate: float = 0.01,
             workers: int = 1, progress: bool = False) -> dict:
    vouchers = max(1, round(YEAR_VOUCHERS * scale))
    setup_started = time.monotonic()
    if pki is None:
        manifest = init_pki(work / "pki", agencies=agencies, now=datetime.datetime.now(datetime.timezone.utc))
        pki = Path(manifest["dir"])
    else:
        manifest = read_pki_manifest(pki)
    codes = sorted(manifest["agencies"])[:agencies]
    today = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).date()
    store_url = store or fresh_sqlite(work / "year.sqlite3")
    problem = load_allotments(work, store_url, allotments(codes, today))
    if problem:
        raise RuntimeError(problem)
    setup_seconds = time.monotonic() - setup_started
    ledger = work / "bank-ledger.txt"
    ledger.unlink(missing_ok=True)
    bank_args = ["--pki", str(pki), "--ledger", str(ledger), "--return-rate", str(return_rate), "--seed", str(seed)]
    env = {**BANK_TIMING, "VGW_BANK_BATCH_SECONDS": "2", "VGW_BANK_RESEND_SECONDS": "120"}
    bank = None
    if amqp:
        prefix = f"year-{uuid.uuid4().hex[:6]}."
        env["VGW_BANK_TOPOLOGY_PREFIX"] = prefix
        bank = BankProcess(["--amqp", amqp, "--topology-prefix", prefix, *bank_args], work / "bank.log")
        gateway = ServedGateway(pki, store_url, work / "gateway.log", threads=8, workers=workers,
                                extra=("--bank-exchange", "--bank-amqp", amqp), env=env)
    else:
        gateway = ServedGateway(pki, store_url, work / "gateway.log", threads=8, command=("sim", "serve"),
                                extra=tuple(bank_args[2:]), env=env)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        sim = AgencySimulator(pki, "127.0.0.1", gateway.port, agencies=codes, seed=seed, concurrency=concurrency,
                              poll_seconds=2.0, mix=YEAR_MIX)
        started = time.monotonic()
        day = sim.run(vouchers=vouchers, settle_timeout=600, progress=progress).as_dict()
        wall = time.monotonic() - started
        gateway_cpu = gateway.cpu_seconds()
        gateway_rss = gateway.peak_rss_bytes()
    finally:
        gateway.stop()
        if bank is not None:
            bank.stop()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    agency_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    tally = {**last_json_line(work / ("bank.log" if amqp else "gateway.log")).get("bank", {}), **ledger_tally(ledger)}
    reconcile = audit_json("reconcile", store_url)
    still_open = open_vouchers(store_url)
    payments = day["payments"].get("paid", 0) + day["payments"].get("returned", 0)
    projected = wall / scale if scale else None
    return {
        "scale": scale, "agencies": len(codes), "vouchers": day["vouchers"], "payments": payments,
        "mode": "amqp" if amqp else "embedded", "store": store_url.split("@")[-1].split("://")[0],
        "gateway_workers": workers if amqp else 1,
        "setup_s": round(setup_seconds, 1), "wall_s": round(wall, 1),
        "projected_year_s": round(projected, 0) if projected else None, "target_s": TARGET_SECONDS,
        "meets_target": projected is not None and projected < TARGET_SECONDS,
        "cpu_s": {"gateway": round(gateway_cpu, 1) if gateway_cpu is not None else None,
                  "agencies": round(agency_cpu, 1)},
        "throughput_per_s": {
            "vouchers_final": day["vouchers_per_s"],
            "submits": round(day["api"].get("submit", {}).get("count", 0) / wall, 1),
            "approvals": round(day["api"].get("approve", {}).get("count", 0) / wall, 1),
            "payments_paid": round(day["payments"].get("paid", 0) / wall, 1),
        },
        "peak_rss_mib": {"gateway": round(gateway_rss / 2**20, 1) if gateway_rss else None,
                         "agencies": round(cpu_after.ru_maxrss / 1024, 1)},
        "outcomes": day["outcomes"], "kinds": day["kinds"], "payments_by_outcome": day["payments"],
        "api": day["api"], "unexpected": day["unexpected"],
        "bank": {"booked": tally.get("booked"), "booked_twice": tally.get("booked_twice"),
                 "messages": tally.get("messages")},
        "reconciled": bool(reconcile.get("ok")), "open_vouchers": still_open,
        "ok": bool(day["ok"]) and bool(reconcile.get("ok")) and tally.get("booked_twice") == 0 and not still_open,
    }


def _run(args: argparse.Namespace) -> int:

    if not 0 < args.scale <= 1:
        raise CliError("--scale must be in (0, 1]")
    if args.store and not args.amqp and not args.store.startswith("sqlite:"):
        raise CliError("--store postgresql://… needs --amqp")
    if args.workers != 1 and not args.amqp:
        raise CliError("--workers needs --amqp (the embedded gateway is one process with its bank in it)")
    options = dict(scale=args.scale, agencies=args.agencies, pki=Path(args.pki).resolve() if args.pki else None,
                   amqp=args.amqp, store=args.store, concurrency=args.concurrency, seed=args.seed,
                   workers=args.workers,
                   progress=sys.stderr.isatty())
    try:
        with work_folder(args.dir, "vgw-year-") as work:
            result = run_year(work, **options)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0 if result["ok"] else 1


def register(registry) -> None:
    p = registry.command("sim", "year", handler=_run,
                         help="the year in a box: 401 agencies, ~150,000 vouchers, ~630,000 payments through the "
                              "five stages and the bank; wall time, CPU, throughput, peak RSS (JSON)")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the year to run (default 1: all of it)")
    p.add_argument("--agencies", type=int, default=AGENCIES, help="agencies (default 401)")
    p.add_argument("--pki", metavar="DIR", help="reuse this `vgw pki init` folder (a 401-agency PKI takes ~2 min)")
    p.add_argument("--dir", help="work folder to keep (default: a temporary one)")
    p.add_argument("--amqp", metavar="URL", help="the bank link over RabbitMQ (with --store)")
    p.add_argument("--store", metavar="URL", help="the gateway's store (default: SQLite in the work folder)")
    p.add_argument("--concurrency", type=int, default=8, help="agency API calls in flight (default 8)")
    p.add_argument("--workers", type=int, default=1, help="with --amqp: gateway worker processes (default 1)")
    p.add_argument("--seed", type=int, default=2027)
