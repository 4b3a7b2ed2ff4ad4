"""``vgw bench statement``: an agency-year of payment lines (default 10,000) and the time, size and memory
of its statement (對帳單) in each format, end to end through adapters/statements/service.py (store query +
build + render), printed as JSON.

Setup (not a result): a test PKI dated at the year's start, then pay days spread over the year (twice a
month by default): on each, a share of one agency's vouchers is placed treasury-accepted
(simulators/bank_day.py), batched into signed pain.001 by the real batcher, and answered by the simulated
bank (signed pain.002 / camt.054, a few returns) through the real report intake, each with the clock at
that day; so the lines carry the dates, states, payees and bank references a year of real payments would.

Measured per format (csv, camt053, pdf), ``--repeat`` times, the median reported:

- ``seconds`` (wall) and ``cpu_s``, split into ``query_s`` (the store's ``statement_lines`` and
  ``paid_before``, and building the :class:`~gateway.statements.lines.Statement`) and ``render_s``;
- ``bytes`` of the body;
- ``peak_traced_mib``: the largest Python heap the call used beyond what was held before it
  (tracemalloc, in one more run of its own, untimed: tracing slows Python several times over);
- ``rss_mib_after``: the process's peak RSS (ru_maxrss) after that format's runs; a format that raises
  it needed more memory than everything before it.

The PDF's first run also pays reportlab's import and the font's registration: it is reported apart as the
PDF's ``first_call_s`` (the whole call) and left out of the median.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from adapters.bank.exchange import BankBatcher, ReportIntake
from adapters.http.query_params import STATEMENT_FORMATS, StatementQuery
from adapters.statements.service import StatementService
from adapters.storage.factory import open_store
from gateway.bank.pain001 import TAIPEI_TREASURY
from gateway.bank.settlement import SigningIdentity
from gateway.business_time import TAIPEI
from gateway.statements.lines import Period
from simulators.bank import SimulatedBank
from simulators.bank_day import day_of_vouchers, place_accepted
from simulators.bench.common import machine
from simulators.pki.layout import agency_code, init_pki, load_cert, load_key

AGENCY = agency_code(0)
TARGET_PDF_S = 60.0
"""The PDF of an agency-year must not take minutes (issue 7)."""


def pay_days(year: int, count: int) -> list[datetime.datetime]:
    """``count`` pay days spread evenly over ``year``, each at 10:00 Taipei time."""
    start = datetime.date(year, 1, 1)
    span = (datetime.date(year, 12, 31) - start).days
    return [datetime.datetime.combine(start + datetime.timedelta(days=round(i * span / max(count - 1, 1))),
                                      datetime.time(10), TAIPEI) for i in range(count)]


def build_year(store, pki_dir: Path, manifest: dict, *, lines: int, days: list[datetime.datetime],
               return_rate: float, seed: int) -> int:
    """Pays ``lines`` payment lines of AGENCY out over ``days`` (see the module's docstring); returns how many
    transfer messages the bank answered."""
    gateway_cert, bank_cert = load_cert(Path(manifest["gateway"]["cert"])), load_cert(Path(manifest["bank"]["cert"]))
    signer = SigningIdentity(load_key(Path(manifest["gateway"]["key"])), gateway_cert, TAIPEI_TREASURY)
    bank_key = load_key(Path(manifest["bank"]["key"]))
    vouchers = day_of_vouchers(lines, agencies=[AGENCY], today=days[0].date(), seed=seed)
    groups: list[list] = [[] for _ in days]
    load = [0] * len(days)
    for voucher in sorted(vouchers, key=lambda v: -v.line_count):  # the fullest pay day gets the next voucher
        day = load.index(min(load))
        groups[day].append(voucher)
        load[day] += voucher.line_count
    messages = 0
    for at, group in zip(days, groups):
        if not group:
            continue
        at_utc = at.astimezone(datetime.timezone.utc)

        def clock(at_utc=at_utc):
            return at_utc

        place_accepted(store, group, at=at_utc)
        BankBatcher(store, signer, clock=clock).batch_all()
        bank = SimulatedBank(gateway_cert, bank_key, bank_cert, clock, seed=seed + messages,
                             return_rate=return_rate)
        intake = ReportIntake(store, bank_cert, treasury_account=TAIPEI_TREASURY.account_number, clock=clock)
        for message in store.unsent_messages():
            for _, report in bank.receive(message.body):
                if intake.handle(report) != "ack":
                    raise RuntimeError(f"a bank report for {message.message_id} was not taken")
            store.mark_sent(message.message_id, at_utc)
            messages += 1
    return messages


def measure(service: StatementService, query: StatementQuery, now: datetime.datetime) -> dict:
    """One end-to-end statement: query + build, then render, each timed."""
    wall, cpu = time.perf_counter(), time.process_time()
    statement = service.build(AGENCY, query, now)
    built = time.perf_counter()
    body, _, _ = service.render(statement, query)
    done = time.perf_counter()
    return {"seconds": done - wall, "cpu_s": time.process_time() - cpu, "query_s": built - wall,
            "render_s": done - built, "bytes": len(body), "entries": len(statement.entries), "body": body}


def traced_peak(service: StatementService, query: StatementQuery, now: datetime.datetime) -> float:
    """MiB of Python heap the call needed at its peak beyond what was allocated before it."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        body, _, _ = service.render(service.build(AGENCY, query, now), query)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del body
    return (peak - before) / 2**20


def pdf_pages(body: bytes) -> int:
    """Page objects in a reportlab PDF (``/Type /Page``, not the ``/Pages`` tree)."""
    return len(re.findall(rb"/Type /Page\b(?!s)", body))


def run(args: argparse.Namespace) -> dict:
    year = args.year
    days = pay_days(year, args.pay_days)
    with tempfile.TemporaryDirectory(prefix="vgw-bench-statement-") as tmp:
        started_pki = datetime.datetime(year, 1, 1, tzinfo=TAIPEI).astimezone(datetime.timezone.utc)
        manifest = init_pki(Path(tmp) / "pki", agencies=1, now=started_pki)
        store = open_store(args.store or f"sqlite:///{Path(tmp) / 'statement.db'}")
        try:
            period = Period(datetime.date(year, 1, 1), datetime.date(year, 12, 31))
            if store.statement_lines(AGENCY, period.start, period.end):
                raise SystemExit(f"vgw bench statement: the store already holds {AGENCY}'s lines of {year}; "
                                 "give it an empty store")
            setup = time.perf_counter()
            messages = build_year(store, Path(tmp) / "pki", manifest, lines=args.lines, days=days,
                                  return_rate=args.return_rate, seed=args.seed)
            setup_s = time.perf_counter() - setup
            service = StatementService(intake=None, store=store)
            now = days[-1] + datetime.timedelta(days=1)
            formats: dict[str, dict] = {}
            first_pdf = None
            for name in STATEMENT_FORMATS:
                query = StatementQuery(period, name)
                if name == "pdf":  # reportlab's import and the font's registration, once per process
                    first_pdf = measure(service, query, now)["seconds"]
                runs = [measure(service, query, now) for _ in range(args.repeat)]
                result = {key: round(statistics.median(r[key] for r in runs), 3)
                          for key in ("seconds", "cpu_s", "query_s", "render_s")}
                result.update(bytes=runs[0]["bytes"], entries=runs[0]["entries"],
                              peak_traced_mib=round(traced_peak(service, query, now), 1),
                              rss_mib_after=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
                if name == "pdf":
                    result["pages"] = pdf_pages(runs[0]["body"])
                    result["first_call_s"] = round(first_pdf, 2)
                formats[name] = result
        finally:
            store.close()
    entries = {f["entries"] for f in formats.values()}
    return {
        "benchmark": "statement",
        "store": "postgresql" if args.store and args.store.startswith("postgresql") else "sqlite",
        "agency": AGENCY, "period": [str(period.start), str(period.end)],
        "lines": args.lines, "pay_days": len(days), "messages": messages, "entries": entries.pop() if len(entries) == 1
        else sorted(entries),
        "repeat": args.repeat, "formats": formats,
        "pdf_target_s": TARGET_PDF_S, "meets_target": formats["pdf"]["seconds"] < TARGET_PDF_S,
        "setup_s": round(setup_s, 1),
        "machine": machine(),
    }


def _command(args: argparse.Namespace) -> int:
    outcome = run(args)
    print(json.dumps(outcome, ensure_ascii=False))
    return 0 if outcome["meets_target"] and not isinstance(outcome["entries"], list) else 1


def register(registry) -> None:
    p = registry.command("bench", "statement", handler=_command,
                         help="an agency-year's statement as CSV, camt.053 and PDF: seconds, bytes, memory (JSON)")
    p.add_argument("--lines", type=int, default=10_000, help="payment lines in the agency's year (default 10,000)")
    p.add_argument("--pay-days", type=int, default=24, help="pay days spread over the year (default 24)")
    p.add_argument("--year", type=int, default=datetime.date.today().year - 1,
                   help="the calendar year paid (default: last year)")
    p.add_argument("--return-rate", type=float, default=0.02, help="share of payments the bank returns (default 0.02)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per format, the median reported (default 3)")
    p.add_argument("--store", metavar="URL", help="an empty store (default: a temporary SQLite file)")
    p.add_argument("--seed", type=int, default=1, help="seed of the vouchers and the bank's returns")
