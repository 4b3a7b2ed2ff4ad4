"""A bank day's worth of treasury-accepted vouchers, placed straight into a store, for bank-side tests and
``vgw bench bank``.

The bank exchange starts where the treasury checks end, so what it needs is vouchers that are
``treasury-accepted`` with their money reserved. Driving 50,000 payments through five signed stages first
would measure the approvals again (``vgw bench approvals`` does); this writes the same rows the workflow
writes — the intake record with the voucher's XML, the status change and the reservation, each through
the store's own port — and nothing else. The vouchers are unsigned: the batcher reads the stored voucher,
it does not verify it again.
"""

from __future__ import annotations

import datetime
import hashlib
import random

from gateway.store import AuditEvent, BudgetOp, IntakeRecord, StatusChange, WorkflowWrite
from gateway.treasury.budget import Allotment
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.model import Voucher
from gateway.vouchers.xml_mapping import voucher_to_xml
from simulators.voucher_factory import VoucherFactory

PAYROLL_SHARE = 0.6
"""About this much of a day's payments are payroll lines (100–800 per voucher); the rest vendor payments."""


def day_of_vouchers(payments: int, *, agencies: list[str], today: datetime.date, seed: int = 0) -> list[Voucher]:
    """Vouchers carrying exactly ``payments`` lines: payroll (100–800 lines) and vendor payments (1–5)."""
    rng = random.Random(seed)
    factory = VoucherFactory(BankDirectory.shipped(), seed=seed)
    vouchers: list[Voucher] = []
    left = payments
    payroll_left = int(payments * PAYROLL_SHARE)
    while left > 0:
        agency = rng.choice(agencies)
        if payroll_left >= 100:
            lines = min(rng.randint(100, 800), payroll_left)
            payroll_left -= lines
            vouchers.append(factory.voucher(agency, today=today, lines=lines, payroll=True))
        else:
            lines = min(rng.randint(1, 5), left)
            vouchers.append(factory.voucher(agency, today=today, lines=lines))
        left -= lines
    return vouchers


def place_accepted(store, vouchers: list[Voucher], *, at: datetime.datetime) -> list[IntakeRecord]:
    """Store each voucher as received and move it to treasury-accepted with its amount reserved, loading
    allotments that cover them first. Returns the records as stored."""
    needed: dict[tuple[str, int, str], int] = {}
    for v in vouchers:
        key = (v.agency_code, v.fiscal_year, v.budget_subject)
        needed[key] = needed.get(key, 0) + v.total_amount
    store.load_allotments([Allotment(*key, amount * 2) for key, amount in sorted(needed.items())],
                          AuditEvent(at, "operator:bank-day", "budget.load", "allotments:bank-day", None, {}))
    records = []
    for v in vouchers:
        body = voucher_to_xml(v)
        sha = hashlib.sha256(body).hexdigest()
        summary = {"control_total": v.total_amount, "line_count": v.line_count,
                   "amounts": [line.amount for line in v.lines], "urgency": v.urgency.value,
                   "budget": {"fiscal_year": v.fiscal_year, "subject": v.budget_subject}, "corrects": None}
        record = IntakeRecord(voucher_id=v.voucher_id, revision=v.revision, agency=v.agency_code, received_sha256=sha,
                              received_bytes=body, received_at=at, status="received",
                              receipt_id=f"R-{sha[:24]}", receipt_xml=b"<Receipt/>", summary=summary)
        event = AuditEvent(at, "simulator:bank-day", "voucher.received", record.subject, sha, {"status": "received"})
        store.record_intake(record, event)
        change = StatusChange(v.voucher_id, v.revision, "received", sha, "treasury-accepted", sha, at)
        store.apply_workflow(WorkflowWrite(
            (change,), (AuditEvent(at, "simulator:bank-day", "workflow.treasury-accept", record.subject, None,
                                   {"status": "treasury-accepted"}),),
            budget=(BudgetOp("reserve", v.voucher_id, v.revision, v.agency_code, v.fiscal_year, v.budget_subject,
                             v.total_amount),)))
        records.append(store.get(v.voucher_id, v.revision))
    return records
