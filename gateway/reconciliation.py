"""Reconciliation: the sums that must agree in a store, and the first that does not. Pure.

What ``vgw audit reconcile`` proves for a store, from figures the storage adapter reads straight from its
tables (adapters/storage/bank.py ``reconciliation_facts``), never from what the gateway believes:

1. every sent voucher's control total and line count equal the sum and count of its payment lines;
2. the payment lines equal what the transfer messages carry (count and control sum), and every
   EndToEndId in the signed messages appears exactly once and is a stored line of that message;
3. the lines by state (pending + accepted + paid + returned) add up to all lines;
4. every voucher's status agrees with its lines (paid: all paid; returned: all final, some returned);
5. every allotment's reserved and consumed equal what its reservations and payment lines hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VoucherFacts:
    voucher_id: str
    revision: int
    status: str
    control_total: int
    line_count: int
    line_sum: int
    lines: int
    line_states: frozenset[str]


@dataclass(frozen=True)
class AllotmentFacts:
    key: str
    reserved: int
    consumed: int
    reserved_by_vouchers: int  # reservations still held per voucher (not yet batched)
    consumed_by_vouchers: int  # voucher-level consumed reservations (none since per-line settlement)
    open_lines: int  # pending + accepted line amounts: still reserved
    paid_lines: int


@dataclass(frozen=True)
class ReconciliationFacts:
    vouchers: tuple[VoucherFacts, ...]
    lines_by_state: dict[str, tuple[int, int]]  # state -> (count, amount)
    message_count: int
    message_payments: int
    message_control_sum: int
    message_ids: dict[str, int] = field(default_factory=dict)  # EndToEndId -> times it appears in sent messages
    misplaced_ids: tuple[str, ...] = ()  # EndToEndIds whose message is not the one their line names
    allotments: tuple[AllotmentFacts, ...] = ()


@dataclass(frozen=True)
class Reconciliation:
    ok: bool
    checked: dict
    discrepancy: str | None = None


_SENT = ("batched", "paid", "returned")


def reconcile(facts: ReconciliationFacts) -> Reconciliation:
    """The first discrepancy in the order of the module's list, or ok with the totals checked."""
    total_count = sum(c for c, _ in facts.lines_by_state.values())
    total_amount = sum(a for _, a in facts.lines_by_state.values())
    checked = {"vouchers": len(facts.vouchers), "lines": total_count, "amount": total_amount,
               "messages": facts.message_count,
               "by_state": {s: {"count": c, "amount": a} for s, (c, a) in sorted(facts.lines_by_state.items())},
               "allotments": len(facts.allotments)}

    def fail(why: str) -> Reconciliation:
        return Reconciliation(False, checked, why)

    voucher_total = 0
    for v in facts.vouchers:
        if v.status not in _SENT:
            continue
        voucher_total += v.control_total
        if (v.control_total, v.line_count) != (v.line_sum, v.lines):
            return fail(f"{v.voucher_id}#{v.revision}: voucher total NT$ {v.control_total:,} in {v.line_count} lines, "
                        f"but its payment lines hold NT$ {v.line_sum:,} in {v.lines}")
    if voucher_total != total_amount:
        return fail(f"sent vouchers total NT$ {voucher_total:,} but the payment lines total NT$ {total_amount:,}")
    if (facts.message_payments, facts.message_control_sum) != (total_count, total_amount):
        return fail(f"transfer messages carry {facts.message_payments} payments, NT$ {facts.message_control_sum:,}; "
                    f"the payment lines are {total_count}, NT$ {total_amount:,}")
    repeated = sorted(e2e for e2e, n in facts.message_ids.items() if n != 1)
    if repeated:
        return fail(f"EndToEndId {repeated[0]} appears {facts.message_ids[repeated[0]]} times in sent messages")
    if facts.message_ids and len(facts.message_ids) != total_count:
        return fail(f"sent messages name {len(facts.message_ids)} EndToEndIds for {total_count} payment lines")
    if facts.misplaced_ids:
        return fail(f"EndToEndId {facts.misplaced_ids[0]} is in a message other than the one its line names")
    for v in facts.vouchers:
        if v.status == "paid" and v.line_states != {"paid"}:
            return fail(f"{v.voucher_id}#{v.revision} is paid but its lines are {sorted(v.line_states)}")
        if v.status == "returned" and ("returned" not in v.line_states or not v.line_states <= {"paid", "returned"}):
            return fail(f"{v.voucher_id}#{v.revision} is returned but its lines are {sorted(v.line_states)}")
        if v.status == "batched" and v.line_states and v.line_states <= {"paid"}:
            return fail(f"{v.voucher_id}#{v.revision} is still batched though every line is paid")
    for a in facts.allotments:
        if a.reserved != a.reserved_by_vouchers + a.open_lines:
            return fail(f"allotment {a.key}: reserved NT$ {a.reserved:,}, but reservations hold "
                        f"NT$ {a.reserved_by_vouchers:,} and unsettled lines NT$ {a.open_lines:,}")
        if a.consumed != a.consumed_by_vouchers + a.paid_lines:
            return fail(f"allotment {a.key}: consumed NT$ {a.consumed:,}, but paid lines hold NT$ {a.paid_lines:,}")
    return Reconciliation(True, checked)
