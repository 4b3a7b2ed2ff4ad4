"""The treasury checks, run by the gateway right after a release and by a periodic sweep.

For one released revision: read the stored voucher (bytes verified at intake), the allotment's balance and
earlier payments to the same accounts, let :func:`gateway.treasury.checks.decide_treasury` decide, and store the
outcome — status, reservation, payee index and audit entry — in ONE transaction. If another release took
the money meanwhile, the store refuses the reservation (:class:`BudgetChanged`) and the check runs again on
the new balance; if another process already checked the revision, its status has moved and this one stops.

Why a sweep as well: the check runs after the releaser's transaction commits, so a crash in between leaves
the revision ``released``. Every gateway process sweeps released revisions at start and every few seconds;
the compare-and-set on status makes concurrent sweeps harmless.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from twisted.logger import Logger

from adapters.clock import utc_now
from adapters.periodic import every
from gateway.errors import Refusal
from gateway.store import BudgetChanged, IntakeRecord, PayeeEntry, StatusChanged, VoucherStore, WorkflowWrite
from gateway.treasury.budget import BudgetKey
from gateway.treasury.checks import DEFAULT_DUPLICATE_WINDOW, EarlierPayment, decide_treasury, payee_keys
from gateway.vouchers.xml_mapping import read_stored_voucher
from gateway.workflow.approvals import system_write
from gateway.workflow.transitions import Actor, Status

log = Logger(namespace="vgw.treasury")

TREASURY_CHECK_ACTOR = "treasury-check"
"""How the audit log names the gateway's automatic treasury checks."""
MAX_ATTEMPTS = 10


class TreasuryService:
    def __init__(self, store: VoucherStore, *, clock: Callable[[], datetime.datetime] = utc_now,
                 duplicate_window: datetime.timedelta = DEFAULT_DUPLICATE_WINDOW) -> None:
        self.store = store
        self.clock = clock
        self.duplicate_window = duplicate_window

    def check(self, voucher_id: str, revision: int) -> str | None:
        """Run the checks on that revision if it is released; the status it ended in (None if it was not
        released, e.g. another process checked it first)."""
        for _ in range(MAX_ATTEMPTS):
            record = self.store.get(voucher_id, revision)
            if record is None or record.status != Status.RELEASED.value:
                return None
            write = self._decide(record, self.clock())
            try:
                self.store.apply_workflow(write)
            except BudgetChanged:
                continue  # the balance moved: decide again on the new one
            except StatusChanged:
                return None  # another process decided it
            status = write.changes[0].new_status
            log.info("treasury check of {subject}: {status}", subject=record.subject, status=status)
            return status
        raise Refusal("voucher-busy", f"{voucher_id}#{revision}: the allotment kept changing during the treasury check")

    def sweep(self, limit: int = 100) -> int:
        """Check every released revision (oldest first, up to ``limit``); how many were checked."""
        checked = 0
        for record in self.store.queue(Status.RELEASED.value, limit=limit):
            if self.check(record.voucher_id, record.revision) is not None:
                checked += 1
        return checked

    def _decide(self, record: IntakeRecord, now: datetime.datetime) -> WorkflowWrite:
        voucher = read_stored_voucher(record.received_bytes)
        key = BudgetKey(record.agency, voucher.fiscal_year, voucher.budget_subject)
        lines = payee_keys(voucher)
        earlier = [EarlierPayment(voucher_id, revision, line_number, status)
                   for _, voucher_id, revision, line_number, status
                   in self.store.earlier_payments(sorted({k for _, k in lines}), since=now - self.duplicate_window,
                                                  exclude_voucher=record.voucher_id,
                                                  exclude_revision=record.revision)
                   if status in _ACTIVE]
        verdict = decide_treasury(key=key, amount=voucher.total_amount, balance=self.store.budget_balance(key),
                                  earlier=earlier)
        write = system_write(record, verdict.event, Actor.TREASURY_CHECK, now, actor_name=TREASURY_CHECK_ACTOR,
                             detail=verdict.detail())
        if verdict.reserves:
            payees = tuple(PayeeEntry(record.voucher_id, record.revision, number, line_key) for number, line_key in lines)
            write = WorkflowWrite(write.changes, write.events, budget=write.budget, payees=payees)
        return write


_ACTIVE = frozenset(s.value for s in (Status.RELEASED, Status.HELD, Status.TREASURY_ACCEPTED, Status.BATCHED,
                                      Status.PAID, Status.RETURNED))
"""Statuses of an earlier payment that make a new one a possible duplicate: pending at the treasury or bank,
paid, or returned (a returned voucher's other lines were paid; the store leaves out the lines the bank
returned). Rejected, superseded and cancelled payments do not count."""


SWEEP_SECONDS = 10.0


def check_after_release(treasury: TreasuryService) -> Callable:
    """An ``ActionService.after_commit`` hook: a release is checked by the treasury at once, in the same
    worker thread, so the agency sees ``treasury-accepted`` (or ``held``, ``rejected``) right away."""
    def hook(record: IntakeRecord, step) -> None:
        if step.flow.status is Status.RELEASED:
            try:
                treasury.check(record.voucher_id, record.revision)
            except Exception:  # the release is stored; the sweep retries. Never fail the releaser's answer.
                log.failure("treasury check of {subject} failed; the sweep will retry", subject=record.subject)
    return hook


def start_sweep(treasury: TreasuryService, seconds: float = SWEEP_SECONDS) -> None:
    """Sweep released revisions now and every ``seconds`` in the thread pool (crash recovery, see module)."""
    every(seconds, treasury.sweep, log=log, what="treasury sweep")
