"""``vgw notices list`` and ``vgw notices letters``: deposit notices (入戶通知) for an operator.

``list`` shows where notices stand (a bounce or a failure is what to look at: the mail server's reply is in
``last_error``). ``letters`` writes, on demand, the PDF of postal letters the gateway otherwise writes once
a day (adapters/notices/letters.py): every pending postal notice of a line paid on or before ``--date``, one
A4 page each, and records them sent; run twice, the second run finds nothing left to print.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from adapters.cli.existing_store import open_existing_store
from adapters.clock import utc_now
from adapters.command_line import CliError
from adapters.storage.factory import STORE_URL_HELP
from gateway.notices.content import NoticeState
from gateway.store import utc_text
from gateway.vouchers.bank_directory import BankDirectory


def _item(row) -> dict:
    def t(value):
        return utc_text(value) if value is not None else None
    return {"end_to_end_id": row.end_to_end_id, "voucher_id": row.voucher_id, "revision": row.revision,
            "line": row.line_number, "agency": row.agency, "channel": row.channel.value, "address": row.address,
            "state": row.state.value, "attempts": row.attempts, "next_attempt_at": t(row.next_attempt_at),
            "last_error": row.last_error, "message_id": row.message_id, "booked_at": t(row.booked_at),
            "sent_at": t(row.sent_at)}


def _list(args: argparse.Namespace) -> int:
    store = open_existing_store(args.store)
    try:
        state = NoticeState(args.state) if args.state else None
        rows, after = [], None
        while len(rows) < args.limit:
            page = store.notice_rows(state=state, after=after, limit=min(1000, args.limit - len(rows)))
            if not page:
                break
            rows += page
            after = page[-1].end_to_end_id
    finally:
        store.close()
    items = [_item(r) for r in rows]
    if args.json:
        print(json.dumps(items, ensure_ascii=False, indent=1))
        return 0
    for i in items:
        print(f"{i['end_to_end_id']}  {i['channel']:<5} {i['state']:<9} attempts={i['attempts']} "
              f"{i['address']}" + (f"  ({i['last_error']})" if i["last_error"] else ""))
    return 0


def _letters(args: argparse.Namespace) -> int:
    from adapters.notices.letters import write_letters
    from adapters.statements.cjk_font import cjk_font_name

    try:
        day = datetime.date.fromisoformat(args.date) if args.date else None
    except ValueError:
        raise CliError(f"--date: expected YYYY-MM-DD, got {args.date!r}") from None
    now = utc_now()
    if day is None:
        from gateway.business_time import TAIPEI

        day = now.astimezone(TAIPEI).date()
    store = open_existing_store(args.store)
    try:
        path, count = write_letters(store, day, Path(args.out), now=now, font=cjk_font_name(),
                                    bank_name=BankDirectory.shipped().bank_name)
    except OSError as exc:
        raise CliError(f"cannot write the letters: {exc}") from None
    finally:
        store.close()
    print(json.dumps({"date": day.isoformat(), "letters": count, "file": str(path) if path else None},
                     ensure_ascii=False))
    return 0


def register(registry) -> None:
    group_help = "deposit notices (入戶通知) told to payees when their payment is booked"
    store_help = STORE_URL_HELP
    p = registry.command("notices", "list", help="where deposit notices stand", handler=_list,
                         group_help=group_help)
    p.add_argument("--store", required=True, metavar="URL", help=store_help)
    p.add_argument("--state", choices=[s.value for s in NoticeState], help="only notices in this state")
    p.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    p.add_argument("--json", action="store_true")
    p = registry.command("notices", "letters", help="write the PDF of pending postal notices and mark them sent",
                         handler=_letters, group_help=group_help)
    p.add_argument("--store", required=True, metavar="URL", help=store_help)
    p.add_argument("--date", help="letters for lines paid on or before this Taipei date (default today)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder the PDF is written to")
