"""The voucher workflow: one table of every allowed transition, and nothing else moves a voucher.

A voucher revision is received (the preparer's signed voucher), approved in turn by the reviewer, the
chief accountant, the agency head and the releaser, checked by the treasury, batched for the bank, and
paid — or sent back (退件), superseded by its correction, returned by the bank (退匯) or cancelled.
Every row names its event, the one actor role allowed to cause it, and what it does to the allotted
budget; a (state, event, actor) that no row names is refused with a stable code. Pure: no I/O, no clock.

Why a table and not methods per state: the whole policy is reviewable in one screen, the tests
enumerate it (every row is exercised, every non-row refused), and the HTTP, AMQP and bank adapters
cannot add a path the table does not have.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.errors import Refusal
from gateway.trust.roles import Role


class Status(enum.Enum):
    RECEIVED = "received"  # awaiting the reviewer (覆核)
    REVIEWED = "reviewed"  # awaiting the chief accountant (會計主管)
    ACCOUNTANT_APPROVED = "accountant-approved"  # awaiting the agency head (首長)
    HEAD_APPROVED = "head-approved"  # awaiting the releaser (放行人)
    RELEASED = "released"  # awaiting the treasury checks (財政局)
    HELD = "held"  # a treasury check wants an operator's decision (e.g. a possible duplicate payment)
    TREASURY_ACCEPTED = "treasury-accepted"  # awaiting a bank batch
    BATCHED = "batched"  # in a transfer message to the treasury agent bank
    PAID = "paid"
    RETURNED = "returned"  # 退匯: the bank could not pay (wrong or closed account, name mismatch)
    REJECTED = "rejected"  # 退件: sent back to the preparer, awaiting a correction
    SUPERSEDED = "superseded"  # a correction (the next revision) replaced this rejected revision
    CANCELLED = "cancelled"  # withdrawn by the agency before release


class Event(enum.Enum):
    APPROVE = "approve"
    REJECT = "reject"
    TREASURY_ACCEPT = "treasury-accept"
    TREASURY_HOLD = "treasury-hold"
    TREASURY_REJECT = "treasury-reject"
    BATCH = "batch"
    PAY = "pay"
    RETURN = "return"
    SUPERSEDE = "supersede"
    CANCEL = "cancel"


class Actor(enum.Enum):
    """Who may cause an event: the five agency roles and the treasury operator sign what they do; the
    treasury checks, the bank and the gateway itself act through their own authenticated channels."""

    PREPARER = "preparer"
    REVIEWER = "reviewer"
    ACCOUNTANT = "accountant"
    HEAD = "head"
    RELEASER = "releaser"
    TREASURY = "treasury"  # a 財政局 operator deciding a held voucher (signed)
    TREASURY_CHECK = "treasury-check"  # the gateway's automatic budget and duplicate checks
    BANK = "bank"  # the treasury agent bank's acknowledgement
    GATEWAY = "gateway"  # bookkeeping the gateway does itself (superseding, batching)

    @classmethod
    def of(cls, role: Role) -> Actor:
        return cls(role.value)

    @property
    def signs(self) -> bool:
        """Whether this actor acts through a signed document by a person (and so is bound by separation of
        duties)."""
        return self in _SIGNING_ACTORS


_SIGNING_ACTORS = frozenset({Actor.PREPARER, Actor.REVIEWER, Actor.ACCOUNTANT, Actor.HEAD, Actor.RELEASER,
                             Actor.TREASURY})


class Budget(enum.Enum):
    """What a transition does to the voucher's allotted budget (歲出分配預算)."""

    NONE = "none"
    RESERVE = "reserve"  # the treasury accepted (or held) the voucher: its amount is set aside
    CONSUME = "consume"  # paid: the reservation becomes spending
    FREE = "free"  # rejected after reservation, or returned by the bank: the amount is available again


@dataclass(frozen=True)
class Transition:
    source: Status
    event: Event
    actor: Actor
    target: Status
    budget: Budget = Budget.NONE


S, E, A, B = Status, Event, Actor, Budget

# The awaited agency stage in each pending state, in order: who signs next.
STAGES: tuple[tuple[Status, Actor, Status], ...] = (
    (S.RECEIVED, A.REVIEWER, S.REVIEWED),
    (S.REVIEWED, A.ACCOUNTANT, S.ACCOUNTANT_APPROVED),
    (S.ACCOUNTANT_APPROVED, A.HEAD, S.HEAD_APPROVED),
    (S.HEAD_APPROVED, A.RELEASER, S.RELEASED),
)

TRANSITIONS: tuple[Transition, ...] = (
    # Inside the agency: each stage approves to the next state, or sends the voucher back (退件).
    *(Transition(source, E.APPROVE, actor, target) for source, actor, target in STAGES),
    *(Transition(source, E.REJECT, actor, S.REJECTED) for source, actor, _ in STAGES),
    # The agency may withdraw a voucher until it is released, and a rejected one instead of correcting it.
    *(Transition(source, E.CANCEL, A.PREPARER, S.CANCELLED) for source, _, _ in STAGES),
    Transition(S.REJECTED, E.CANCEL, A.PREPARER, S.CANCELLED),
    # The treasury checks, right after release: over the allotment -> rejected (nothing reserved);
    # otherwise the amount is reserved and the voucher accepted, or held for an operator.
    Transition(S.RELEASED, E.TREASURY_ACCEPT, A.TREASURY_CHECK, S.TREASURY_ACCEPTED, B.RESERVE),
    Transition(S.RELEASED, E.TREASURY_HOLD, A.TREASURY_CHECK, S.HELD, B.RESERVE),
    Transition(S.RELEASED, E.TREASURY_REJECT, A.TREASURY_CHECK, S.REJECTED),
    Transition(S.HELD, E.APPROVE, A.TREASURY, S.TREASURY_ACCEPTED),
    Transition(S.HELD, E.REJECT, A.TREASURY, S.REJECTED, B.FREE),
    # The bank.
    Transition(S.TREASURY_ACCEPTED, E.BATCH, A.GATEWAY, S.BATCHED),
    # Once batched, money moves per payment line as the bank answers (gateway/bank/outcomes.py money_move);
    # the voucher settles when every line has a final answer: all paid, or some returned (退匯).
    Transition(S.BATCHED, E.PAY, A.BANK, S.PAID),
    Transition(S.BATCHED, E.RETURN, A.BANK, S.RETURNED),  # some line rejected or returned by the bank
    Transition(S.PAID, E.RETURN, A.BANK, S.RETURNED),  # 退匯 after settlement: a line's money came back
    # A correction (the next revision, received by intake) replaces the rejected one.
    Transition(S.REJECTED, E.SUPERSEDE, A.GATEWAY, S.SUPERSEDED),
)

del S, E, A, B

_TABLE: dict[tuple[Status, Event, Actor], Transition] = {}
for _row in TRANSITIONS:
    assert (_row.source, _row.event, _row.actor) not in _TABLE, f"two rows for {_row}"
    _TABLE[(_row.source, _row.event, _row.actor)] = _row

FINAL = frozenset(status for status in Status if not any(t.source is status for t in TRANSITIONS))
"""States no event leaves: returned (the agency re-remits with a new voucher), superseded, cancelled."""

AWAITING: dict[Status, Actor] = {source: actor for source, actor, _ in STAGES} | {Status.HELD: Actor.TREASURY}
"""The signing actor a pending state waits for: the queue it sits in."""

QUEUE_OF: dict[Actor, Status] = {actor: status for status, actor in AWAITING.items()} | {Actor.PREPARER: Status.REJECTED}
"""What each signing actor's work queue holds: the state awaiting them (the preparer's: vouchers sent
back for correction, 退件)."""


def transition(status: Status, event: Event, actor: Actor) -> Transition:
    """The row that lets ``actor`` cause ``event`` in ``status``; else a Refusal saying what is possible."""
    row = _TABLE.get((status, event, actor))
    if row is not None:
        return row
    if status in FINAL:
        raise Refusal("voucher-not-pending", f"the voucher is {status.value}; nothing more can happen to it")
    awaited = AWAITING.get(status)
    if awaited is not None and awaited is not actor and event in (Event.APPROVE, Event.REJECT):
        raise Refusal("action-out-of-order", f"the voucher is {status.value} and awaits the {awaited.value}, "
                      f"not the {actor.value}")
    allowed = sorted(f"{t.event.value} by the {t.actor.value}" for t in TRANSITIONS if t.source is status)
    raise Refusal("action-out-of-order", f"the voucher is {status.value}: {event.value} by the {actor.value} is "
                  f"not possible now (possible: {', '.join(allowed)})")
