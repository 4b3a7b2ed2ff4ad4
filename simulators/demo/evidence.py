"""``vgw demo --out DIR``: the evidence a tester keeps — every bank message as sent and as received (the
signed XML, named by message id), the audit log (one JSON object per entry, in chain order), and the
summaries. The signed vouchers, actions and receipts are written there by the simulators as they go."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


def export_store(store_url: str, out: Path) -> dict:
    """Write the store's bank messages and audit log under ``out``; what was written, counted."""
    from adapters.storage.factory import open_store

    store = open_store(store_url)
    counts = {}
    try:
        for direction, folder in (("out", "sent"), ("in", "received")):
            target = out / "bank" / folder
            target.mkdir(parents=True, exist_ok=True)
            after, n = None, 0
            while True:
                page = store.bank_messages(direction, after=after, limit=200)
                for message in page:
                    (target / f"{message.message_id}.xml").write_bytes(message.body)
                n += len(page)
                if len(page) < 200:
                    break
                after = page[-1].message_id
            counts[f"bank_{folder}"] = n
        after, n = 0, 0
        with open(out / "audit.jsonl", "w", encoding="utf-8") as log:
            while True:
                page = store.audit_entries(after_seq=after, limit=1000)
                for entry in page:
                    log.write(json.dumps(dataclasses.asdict(entry), ensure_ascii=False, default=str) + "\n")
                n += len(page)
                if not page:
                    break
                after = page[-1].seq
        counts["audit_entries"] = n
    finally:
        store.close()
    return counts
