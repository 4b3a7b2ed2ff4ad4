"""Turning workflow state into bank messages and bank reports back into workflow state. Pure.

Two decisions live here, each a plain function over values the adapters read from the store:

- :func:`build_batch`: treasury-accepted vouchers → their payment lines, grouped into signed pain.001
  transfer messages (gateway/bank/batching.py, gateway/bank/pain001.py, gateway/bank/envelope.py), and the
  one :class:`BatchWrite` that moves the vouchers to ``batched`` together with the outbox rows.
- :func:`settle_report`: a verified bank report and the stored lines it names → the line changes, money
  moves and per-voucher audit events of ONE :class:`ReportWrite`,
  plus what could not be applied (a report not bound to what was sent, gateway/bank/binding.py; unknown
  references; contradictions) for the dead-letter queue; then
  :func:`settlement_write` settles each voucher whose lines all have a final answer.

Why per line: a payroll voucher carries hundreds of payees; the bank pays most and returns a few (退匯).
The agency must learn which, at once; the voucher itself settles only when every line has a final answer.
"""

from __future__ import annotations

import datetime
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from gateway.bank.batching import plan_transfers
from gateway.bank.binding import REFERENCE_UNKNOWN, Unapplied, line_problem, original_problems
from gateway.bank.envelope import seal
from gateway.bank.outcomes import LineFacts, apply_outcome, filled_facts, money_move
from gateway.bank.pain001 import TreasuryAccount, build_pain001
from gateway.bank.payments import BankOutcome, BankReport, LineState, Payment, end_to_end_id
from gateway.bank.store import (
    BankMessageRecord,
    BatchedPayment,
    BatchWrite,
    LineChange,
    LineStatus,
    PaymentRow,
    ReportWrite,
    SentMessage,
)
from gateway.errors import Refusal
from gateway.store import AuditEvent, IntakeRecord, StatusChange, VoucherHead, WorkflowWrite
from gateway.vouchers.model import Voucher
from gateway.workflow.approvals import system_write
from gateway.workflow.transitions import Actor, Event, Status
from gateway.xmlsec.signing import SignerKey

GATEWAY_NAME = "TPE-TREASURY-GATEWAY"
"""How the gateway names itself as the sender of transfer messages (schemas/bank-message.xsd Sender)."""
BANK_NAME = "FUBON-012-2102"
"""The treasury agent bank (代庫銀行): Taipei Fubon Bank, treasury branch 012-2102."""
TRANSFER_TYPE = "pain.001.001.09"
TRANSFER_ROUTING = "transfers"
REPORT_ROUTING = "reports"
BANK_ACTOR = "bank"
BATCH_ACTOR = "gateway"
MAX_REMITTANCE = 140


def voucher_payments(record: IntakeRecord, voucher: Voucher, execution_date: datetime.date) -> list[Payment]:
    """Every payee line of one stored, verified voucher revision as a payment to send."""
    text = voucher.purpose[:MAX_REMITTANCE]
    return [Payment(end_to_end_id(voucher.agency_code, voucher.fiscal_year, voucher.voucher_number,
                                  voucher.revision, line.number),
                    record.voucher_id, record.revision, line.number, record.agency, line.amount, line.payee_name,
                    line.payee_id, line.bank_code, line.branch_code, line.account_number,
                    voucher.payment_method.kind.value, execution_date, text, line.notice)
            for line in voucher.lines]


@dataclass(frozen=True)
class SigningIdentity:
    """The gateway's signing key and certificate (the receipt key), and the treasury account it pays from."""

    key: SignerKey
    cert: x509.Certificate
    debtor: TreasuryAccount


def build_batch(vouchers: Sequence[tuple[IntakeRecord, Voucher]], *, execution_date: datetime.date,
                max_per_message: int, signer: SigningIdentity, at: datetime.datetime) -> BatchWrite:
    """One batch: the vouchers' lines in signed transfer messages, and their move to ``batched``."""
    payments: list[Payment] = []
    keys: dict[tuple[str, int], tuple[int, str]] = {}
    changes: list[StatusChange] = []
    events: list[AuditEvent] = []
    for record, voucher in vouchers:
        payments += voucher_payments(record, voucher, execution_date)
        keys[(record.voucher_id, record.revision)] = (voucher.fiscal_year, voucher.budget_subject)
    plans = plan_transfers(payments, max_per_message=max_per_message)
    messages: list[BankMessageRecord] = []
    batched: list[BatchedPayment] = []
    carried: dict[tuple[str, int], set[str]] = defaultdict(set)
    for plan in plans:
        body = seal(build_pain001(plan, debtor=signer.debtor, created_at=at), message_id=plan.message_id,
                    message_type=TRANSFER_TYPE, sender=GATEWAY_NAME, receiver=BANK_NAME, key=signer.key,
                    cert=signer.cert, created_at=at)
        messages.append(BankMessageRecord("out", plan.message_id, TRANSFER_TYPE, TRANSFER_ROUTING, body,
                                          hashlib.sha256(body).hexdigest(), plan.count, plan.control_sum, at))
        for group in plan.groups:
            for payment in group.payments:
                year, subject = keys[(payment.voucher_id, payment.revision)]
                batched.append(BatchedPayment(payment, plan.message_id, group.payment_info_id, year, subject))
                carried[(payment.voucher_id, payment.revision)].add(plan.message_id)
    for record, _voucher in vouchers:
        write = system_write(record, Event.BATCH, Actor.GATEWAY, at, actor_name=BATCH_ACTOR,
                             detail={"messages": sorted(carried[(record.voucher_id, record.revision)])})
        changes += write.changes
        events += write.events
    return BatchWrite(tuple(changes), tuple(batched), tuple(messages), tuple(events))


# --- reports ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settlement:
    write: ReportWrite
    unapplied: tuple[Unapplied, ...] = ()


def scope_of(outcome: BankOutcome) -> tuple[str, str]:
    """(kind, reference) of what an outcome is about, for the adapter to fetch its lines."""
    if outcome.end_to_end_id:
        return "payment", outcome.end_to_end_id
    if outcome.original_payment_info_id:
        return "group", outcome.original_payment_info_id
    return "message", outcome.original_message_id or ""


def _facts(row: PaymentRow) -> LineFacts:
    return LineFacts(row.booked_on, row.bank_reference, row.reason_code, row.reason_text)


def settle_report(report: BankReport, record: BankMessageRecord, *, targets: Sequence[list[PaymentRow]],
                  sent: SentMessage | None, at: datetime.datetime) -> Settlement:
    """What ``report`` does to its lines. ``targets[i]`` are the stored lines outcome ``i`` names (empty:
    unknown); ``sent`` is the stored transfer message a pain.002 answers (None when there is none, or for a
    camt.054). Nothing applies unless the report is bound to what was sent (gateway/bank/binding.py).
    Outcomes apply in report order; later ones see earlier ones' effect, on the state and on the facts."""
    state: dict[str, LineState] = {}
    facts: dict[str, LineFacts] = {}
    changes: dict[str, LineChange] = {}
    unapplied: list[Unapplied] = original_problems(report.original, sent)
    # per voucher: how many lines each report outcome moved, and the returned lines with their reasons (the
    # paid ones are in the payments table; the audit entry stays small for an 800-line payroll)
    notes: dict[tuple[str, int], dict] = defaultdict(lambda: {"lines": defaultdict(int), "returned": [], "filled": 0})
    for outcome, rows in zip(report.outcomes, targets, strict=True):
        if not rows:
            kind, ref = scope_of(outcome)
            unapplied.append(Unapplied(REFERENCE_UNKNOWN, ref, f"no {kind} {ref!r} was sent to the bank"))
            continue
        if outcome.end_to_end_id:
            unbound = line_problem(outcome, rows[0])
            if unbound is not None:
                unapplied.append(unbound)
                continue
            if outcome.amount is not None and outcome.amount != rows[0].amount:
                unapplied.append(Unapplied("bank-amount-mismatch", outcome.end_to_end_id, f"the bank reports NT$ "
                                           f"{outcome.amount:,} for a NT$ {rows[0].amount:,} payment"))
                continue
        reported = LineFacts(outcome.booked_on, outcome.bank_reference, outcome.reason_code, outcome.reason_text)
        for row in rows:
            e2e = row.end_to_end_id
            current = state.get(e2e, row.state)
            known = facts.get(e2e) or _facts(row)
            try:
                after = apply_outcome(current, outcome.kind)
                added = filled_facts(current, outcome.kind, known, reported) if after is None else None
            except Refusal as refusal:
                unapplied.append(Unapplied(refusal.code, e2e, refusal.message))
                continue
            if after is None and added is None:
                continue
            note = notes[(row.voucher_id, row.revision)]
            if after is None:  # the state stays; the report adds facts the line lacked
                after, write = current, added
                note["filled"] += 1
            else:
                reason = outcome.reason_code if after is LineState.RETURNED else None
                write = LineFacts(outcome.booked_on, outcome.bank_reference, reason,
                                  outcome.reason_text if reason else None)
                note["lines"][after.value] += 1
                if reason:
                    note["returned"].append({"line": row.line_number, "end_to_end_id": e2e, "reason_code": reason,
                                             "reason_text": outcome.reason_text})
            first = changes.get(e2e)
            expected = first.expected if first else row.state
            merged = _merged(first, write)
            changes[e2e] = LineChange(e2e, expected, after, money_move(expected, after),
                                      reason_code=merged.reason_code, reason_text=merged.reason_text,
                                      bank_reference=merged.bank_reference, booked_on=merged.booked_on,
                                      expected_booked_on=row.booked_on)
            state[e2e] = after
            facts[e2e] = LineFacts(merged.booked_on or known.booked_on, merged.bank_reference or known.bank_reference,
                                   merged.reason_code or known.reason_code, merged.reason_text or known.reason_text)
    events = [AuditEvent(at=at, actor=BANK_ACTOR, action="bank.report", subject=f"{key[0]}#{key[1]}",
                         detail={"report": report.message_id, "type": report.message_type,
                                 "lines": dict(sorted(notes[key]["lines"].items()))}
                         | ({"returned": notes[key]["returned"]} if notes[key]["returned"] else {})
                         | ({"filled_in": notes[key]["filled"]} if notes[key]["filled"] else {}))
              for key in sorted(notes)]
    return Settlement(ReportWrite(record, tuple(changes.values()), tuple(events), at), tuple(unapplied))


def _merged(first: LineChange | None, write: LineFacts) -> LineFacts:
    """What one report writes to a line it names more than once: the later outcome's facts over the earlier."""
    if first is None:
        return write
    return LineFacts(write.booked_on or first.booked_on, write.bank_reference or first.bank_reference,
                     write.reason_code or first.reason_code, write.reason_text or first.reason_text)


def settlement_write(record: IntakeRecord | VoucherHead, lines: Sequence[PaymentRow | LineStatus],
                     at: datetime.datetime) -> WorkflowWrite | None:
    """The voucher's settlement once its lines say so (see :func:`_settling_event`), or None.

    Decided after a report's lines are stored, in a transaction of its own, on lines read afresh: two
    reports about one voucher applied at once each see only their own lines before they commit, but
    whichever commits last sees both when it decides here. The compare-and-set on the voucher's status
    makes a second decision harmless, and a sweep settles what a crash left between the two."""
    event = _settling_event(Status(record.status), [line.state for line in lines])
    if event is None:
        return None
    returned = [{"line": line.line_number, "reason_code": line.reason_code} for line in lines
                if line.state is LineState.RETURNED]
    detail = {"lines": len(lines), "paid": sum(1 for line in lines if line.state is LineState.PAID)}
    return system_write(record, event, Actor.BANK, at, actor_name=BANK_ACTOR,
                        detail=detail | ({"returned": returned} if returned else {}))


_FINAL = (LineState.PAID, LineState.RETURNED)


def _settling_event(status: Status, lines: list[LineState]) -> Event | None:
    """Whether a voucher settles now: every line final → PAY (all paid) or RETURN (some returned); a paid
    voucher with a line returned afterwards → RETURN."""
    if status is Status.BATCHED and lines and all(s in _FINAL for s in lines):
        return Event.RETURN if LineState.RETURNED in lines else Event.PAY
    if status is Status.PAID and LineState.RETURNED in lines:
        return Event.RETURN
    return None
