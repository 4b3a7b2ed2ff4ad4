"""``vgw budget load`` and ``vgw budget show``: the treasury operator's allotted budgets (歲出分配預算).

``load`` reads an allotment CSV (agency, fiscal_year, budget_subject, amount; see gateway/treasury/budget.py), refuses
the whole file if any line is bad or would lower an allotment below what is already reserved or paid, and
otherwise sets every listed allotment in one transaction with an audit entry naming the file's SHA-256.
``show`` prints where each allotment stands.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json

from adapters.cli.voucher import read_input
from adapters.clock import utc_now
from adapters.command_line import CliError
from adapters.storage.factory import STORE_URL_HELP, open_store
from gateway.errors import Refusal
from gateway.store import AuditEvent, StoreError
from gateway.treasury.budget import parse_allotments


def _open(url: str):
    try:
        return open_store(url)
    except (ValueError, StoreError) as exc:
        raise CliError(f"cannot open the store: {exc}") from None


def _load(args: argparse.Namespace) -> int:
    data = read_input(args.file)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CliError(f"{args.file}: not UTF-8 text") from None
    try:
        allotments = parse_allotments(text)
    except Refusal as refusal:
        for problem in refusal.problems:
            print(f"{args.file}:{problem.line if problem.line is not None else '-'}: {problem.code}: {problem.message}")
        return 1
    store = _open(args.store)
    try:
        event = AuditEvent(at=utc_now(), actor=f"operator:{args.operator or getpass.getuser()}", action="budget.load",
                           subject=f"allotments:{args.file}", document_sha256=hashlib.sha256(data).hexdigest(),
                           detail={"allotments": len(allotments), "total": sum(a.amount for a in allotments)})
        store.load_allotments(allotments, event)
    except Refusal as refusal:
        for problem in refusal.problems:
            print(f"{args.file}:{problem.line if problem.line is not None else '-'}: {problem.code}: {problem.message}")
        return 1
    except StoreError as exc:
        raise CliError(f"cannot load the allotments: {exc}") from None
    finally:
        store.close()
    print(f"{args.file}: {len(allotments)} allotments loaded, NT$ {sum(a.amount for a in allotments):,} in all")
    return 0


def _show(args: argparse.Namespace) -> int:
    store = _open(args.store)
    try:
        balances = store.budget_balances(args.agency)
    finally:
        store.close()
    rows = [{"agency": k.agency, "fiscal_year": k.fiscal_year, "budget_subject": k.budget_subject,
             "allotted": b.allotted, "reserved": b.reserved, "consumed": b.consumed, "remaining": b.remaining}
            for k, b in balances]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    for row in rows:
        print(f"{row['agency']} {row['fiscal_year']} {row['budget_subject']}: allotted {row['allotted']:,}, "
              f"reserved {row['reserved']:,}, paid {row['consumed']:,}, remaining {row['remaining']:,}")
    return 0


def register(registry) -> None:
    group_help = "allotted budgets (歲出分配預算) the treasury checks releases against"
    store_help = STORE_URL_HELP
    p = registry.command("budget", "load", help="load an allotment CSV (all lines or none)", handler=_load,
                         group_help=group_help)
    p.add_argument("--store", required=True, metavar="URL", help=store_help)
    p.add_argument("--operator", help="who loads it, for the audit log (default: the login name)")
    p.add_argument("file", metavar="FILE.csv", help="agency,fiscal_year,budget_subject,amount; - for standard input")
    p = registry.command("budget", "show", help="where each allotment stands", handler=_show, group_help=group_help)
    p.add_argument("--store", required=True, metavar="URL", help=store_help)
    p.add_argument("--agency", help="only this agency's allotments")
    p.add_argument("--json", action="store_true")
