"""``vgw audit verify`` walks a store's audit chain and reports the first broken link; ``vgw audit reconcile``
proves the store's money adds up (gateway/reconciliation.py) and reports the first discrepancy.

Run by operators after restores and on a schedule; the head hash it prints is worth keeping elsewhere
(a ticket, a log shipped off the host), because a chain cut short at its end still verifies on its own.
Exit 0 when the chain holds, 1 at the first broken link (seq and reason), 2 when the store cannot be
opened; never a traceback.
"""

from __future__ import annotations

import argparse
import json

from adapters.cli.existing_store import open_existing_store
from adapters.command_line import CliError
from adapters.storage.factory import STORE_URL_HELP
from gateway.audit import ChainReport, ChainVerifier
from gateway.reconciliation import reconcile
from gateway.store import StoreError, UnreadableAuditEntry

PAGE = 1000


def walk_chain(store, page: int = PAGE) -> ChainReport:
    """Feed the whole chain to a verifier one page at a time; an unreadable row is a broken link there."""
    verifier = ChainVerifier()
    after = 0
    while True:
        try:
            entries = store.audit_entries(after_seq=after, limit=page)
        except UnreadableAuditEntry as bad:
            # Check the readable entries before it first: an earlier break must be reported first.
            readable = store.audit_entries(after_seq=after, limit=bad.seq - after - 1) if bad.seq - after > 1 else []
            if verifier.feed(readable):
                report = verifier.report()
                return ChainReport(False, report.checked, report.head_seq, report.head_hash, bad.seq,
                                   f"unreadable entry: {bad.why}")
            return verifier.report()
        if not entries or not verifier.feed(entries):
            return verifier.report()
        after = entries[-1].seq


def _verify(args: argparse.Namespace) -> int:
    store = open_existing_store(args.store)
    try:
        report = walk_chain(store)
    except StoreError as exc:
        raise CliError(f"cannot read the audit log: {exc}") from None
    finally:
        store.close()
    if args.json:
        print(json.dumps({"ok": report.ok, "checked": report.checked, "head_seq": report.head_seq,
                          "head_hash": report.head_hash, "broken_seq": report.broken_seq,
                          "reason": report.reason}))
    elif report.ok:
        print(f"audit chain OK: {report.checked} entries checked; head seq {report.head_seq} "
              f"hash {report.head_hash}")
    else:
        print(f"audit chain BROKEN at seq {report.broken_seq}: {report.reason} "
              f"({report.checked} entries checked; last good seq {report.head_seq})")
    return 0 if report.ok else 1


def _reconcile(args: argparse.Namespace) -> int:
    store = open_existing_store(args.store)
    try:
        result = reconcile(store.reconciliation_facts())
    except StoreError as exc:
        raise CliError(f"cannot read the store: {exc}") from None
    finally:
        store.close()
    if args.json:
        print(json.dumps({"ok": result.ok, "discrepancy": result.discrepancy, **result.checked}, ensure_ascii=False))
    elif result.ok:
        c = result.checked
        print(f"reconciled: {c['vouchers']} vouchers, {c['lines']} payment lines, NT$ {c['amount']:,} in "
              f"{c['messages']} transfer messages; " + ", ".join(f"{s} {v['count']} (NT$ {v['amount']:,})"
                                                                  for s, v in c["by_state"].items()))
    else:
        print(f"NOT reconciled: {result.discrepancy}")
    return 0 if result.ok else 1


def register(registry) -> None:
    p = registry.command("audit", "verify", help="check the audit log's hash chain; report the first broken link",
                         handler=_verify, group_help="inspect the audit log")
    p.add_argument("--store", required=True, metavar="URL",
                   help=STORE_URL_HELP)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    r = registry.command("audit", "reconcile", handler=_reconcile,
                         help="prove the store's money adds up: vouchers = lines = sent = paid + returned + pending, "
                              "no EndToEndId twice, budgets consistent; exit 1 with the first discrepancy")
    r.add_argument("--store", required=True, metavar="URL",
                   help=STORE_URL_HELP)
    r.add_argument("--json", action="store_true", help="print the result as JSON")
