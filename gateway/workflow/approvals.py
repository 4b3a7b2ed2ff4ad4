"""Deciding a signed action against a voucher revision's approval chain: the heart of the workflow.

A :class:`Flow` is what the store knows of one voucher revision: its status and the chain of stage
signatures so far (the preparer's voucher first). :func:`decide_action` takes a verified action and says
what happens, or refuses with a code, checking in this order:

1. the action is about these exact voucher bytes (``action-voucher-mismatch``);
2. the workflow table allows this decision at this stage now (``voucher-not-pending``,
   ``action-out-of-order``);
3. the signer holds the stage's role for the voucher's agency at signing time, directly or as a deputy
   within the deputy's window (``signer-not-authorised``; treasury operators for the treasury agency);
4. the action names the previous signed document of the chain (``action-chain-broken``);
5. separation of duties: the signer is not anyone who signed another stage of this revision, by
   registry person, certificate key or certificate (``separation-of-duties``), unless an explicit
   registry exception lets that person combine those two stages. A withdrawal (cancel, by a preparer)
   approves nothing, so the preparer who signed the voucher may sign it.

Pure: the registry, the flow and the action are arguments; the adapter stores the outcome in one
transaction that also checks the flow did not change meanwhile.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace

from gateway.errors import Refusal
from gateway.store import (
    ActionRecord,
    AuditEvent,
    BudgetOp,
    IntakeRecord,
    StatusChange,
    VoucherHead,
    WorkflowWrite,
    actor_of,
    parse_utc_text,
)
from gateway.trust.certificates import CertificateIdentity
from gateway.trust.registry import Grant, RoleRegistry
from gateway.trust.roles import TREASURY_AGENCY, Role
from gateway.workflow.actions import Decision, VerifiedAction
from gateway.workflow.transitions import Actor, Budget, Event, Status, Transition, transition


@dataclass(frozen=True)
class StageSignature:
    """One signed link of a revision's chain: who signed which stage, over which document."""

    actor: Actor
    person: str
    """The holder as the role registry names them (several certificates may belong to one person)."""
    key_sha256: str
    certificate: str
    """Issuer and serial of the certificate (``cert:ISSUER#SERIAL``)."""
    document_sha256: str
    """SHA-256 of the signed document as received: the voucher for the preparer, else the action."""
    signed_at: datetime.datetime
    grant_kind: str = "principal"

    def same_holder(self, person: str, identity: CertificateIdentity) -> bool:
        return (self.person == person or self.key_sha256 == identity.key_sha256
                or self.certificate == actor_of(identity))


@dataclass(frozen=True)
class Flow:
    voucher_id: str
    revision: int
    agency: str
    voucher_sha256: str
    status: Status
    signatures: tuple[StageSignature, ...]
    """The preparer's signature first, then each stage's action in order."""

    @property
    def chain_head(self) -> str:
        """What the next action must name as PreviousSha256."""
        return self.signatures[-1].document_sha256 if self.signatures else self.voucher_sha256


@dataclass(frozen=True)
class Step:
    """The decided outcome of one action: the row applied, the flow after it, and the grant relied on."""

    transition: Transition
    flow: Flow
    grant: Grant


_EVENT_OF = {Decision.APPROVE: Event.APPROVE, Decision.REJECT: Event.REJECT, Decision.CANCEL: Event.CANCEL}


def decide_action(flow: Flow, verified: VerifiedAction, registry: RoleRegistry) -> Step:
    """What ``verified`` does to ``flow``, or a :class:`Refusal` with the first rule it breaks (see module)."""
    action = verified.action
    if (action.voucher_id, action.revision) != (flow.voucher_id, flow.revision):
        raise ValueError("decide_action needs the flow of the action's own voucher revision")
    if action.voucher_sha256 != flow.voucher_sha256:
        raise Refusal("action-voucher-mismatch", f"the action approves voucher bytes with SHA-256 "
                      f"{action.voucher_sha256}, but revision {flow.revision} of {flow.voucher_id} was received as "
                      f"{flow.voucher_sha256}", path="/Action/VoucherSha256")
    row = transition(flow.status, _EVENT_OF[action.decision], action.stage)
    role = Role(action.stage.value)
    agency = TREASURY_AGENCY if action.stage is Actor.TREASURY else flow.agency
    grant = registry.authorise(verified.signer, agency, role, action.signing_time)
    if action.previous_sha256 != flow.chain_head:
        raise Refusal("action-chain-broken", f"PreviousSha256 must name the last signed document of this "
                      f"revision's chain ({flow.chain_head}), not {action.previous_sha256}",
                      path="/Action/PreviousSha256")
    # A withdrawal is not an approval: the preparer who signed the voucher may withdraw it.
    for earlier in (flow.signatures if row.event is not Event.CANCEL else ()):
        if earlier.same_holder(grant.person, verified.signer) and not registry.permits_combined(
                flow.agency, grant.person, Role(earlier.actor.value), role, action.signing_time):
            raise Refusal("separation-of-duties", f"{grant.person} already signed this revision as "
                          f"{earlier.actor.value}; one person signs at most one stage of a voucher")
    signature = StageSignature(actor=action.stage, person=grant.person, key_sha256=verified.signer.key_sha256,
                               certificate=actor_of(verified.signer), document_sha256=verified.received_sha256,
                               signed_at=action.signing_time, grant_kind=grant.kind.value)
    return Step(row, replace(flow, status=row.target, signatures=(*flow.signatures, signature)), grant)


def apply_event(flow: Flow, event: Event, actor: Actor) -> tuple[Transition, Flow]:
    """An event caused by the treasury checks, the bank or the gateway (not a signed person): its row and the
    flow after it, or a Refusal from the table."""
    if actor.signs:
        raise ValueError(f"{actor.value} acts through signed actions (decide_action)")
    row = transition(flow.status, event, actor)
    return row, replace(flow, status=row.target)


def flow_of(record: IntakeRecord, actions: list[ActionRecord]) -> Flow:
    """The flow of a stored revision: its status, and its chain from the preparer's signature on."""
    signer = record.summary.get("signer", {})
    issuer, serial = signer.get("issuer", ""), signer.get("serial", "")
    certificate = f"cert:{issuer}#{serial}"
    signed_at = signer.get("signed_at")
    preparer = StageSignature(actor=Actor.PREPARER, person=signer.get("person") or certificate,
                              key_sha256=signer.get("key_sha256", ""), certificate=certificate,
                              document_sha256=record.received_sha256,
                              signed_at=parse_utc_text(signed_at) if signed_at else record.received_at,
                              grant_kind=signer.get("grant", "principal"))
    stages = tuple(StageSignature(actor=Actor(a.stage), person=a.person, key_sha256=a.key_sha256,
                                  certificate=a.certificate, document_sha256=a.action_sha256, signed_at=a.signed_at,
                                  grant_kind=a.grant_kind) for a in actions)
    flow = Flow(record.voucher_id, record.revision, record.agency, record.received_sha256, Status(record.status),
                (preparer, *stages))
    if flow.chain_head != record.chain_sha256:
        raise ValueError(f"{record.subject}: the stored chain head does not match its stored actions")
    return flow


GATEWAY_ACTOR = "gateway"
"""How the audit log names the gateway acting on its own (superseding, batching)."""


def system_write(record: IntakeRecord | VoucherHead, event: Event, actor: Actor, at: datetime.datetime, *,
                 actor_name: str, detail: dict | None = None) -> WorkflowWrite:
    """The write for an event not caused by a signed person (treasury checks, bank, gateway): the table's
    row applied to ``record`` as stored, as a compare-and-set on its status and chain, with its audit event."""
    row = transition(Status(record.status), event, actor)
    change = StatusChange(record.voucher_id, record.revision, expected_status=record.status,
                          expected_chain=record.chain_sha256, new_status=row.target.value,
                          new_chain=record.chain_sha256, at=at)
    audit = AuditEvent(at=at, actor=actor_name, action=f"workflow.{event.value}", subject=record.subject,
                       detail={"role": actor.value, "status": row.target.value, "from": row.source.value,
                               **(detail or {})})
    return WorkflowWrite(changes=(change,), events=(audit,), budget=budget_ops(row, record))


def supersede_write(rejected: IntakeRecord, by_revision: int, at: datetime.datetime, *,
                    by_voucher: str | None = None) -> WorkflowWrite:
    """A correction (or a replacement under another voucher id, ``by_voucher``) was received: the rejected
    revision it replaces becomes superseded, in the same transaction."""
    detail = {"by_revision": by_revision} | ({"by_voucher": by_voucher} if by_voucher else {})
    return system_write(rejected, Event.SUPERSEDE, Actor.GATEWAY, at, actor_name=GATEWAY_ACTOR, detail=detail)


_BUDGET_KINDS = {Budget.RESERVE: "reserve", Budget.CONSUME: "consume", Budget.FREE: "free"}


def budget_ops(row: Transition, record: IntakeRecord | VoucherHead) -> tuple[BudgetOp, ...]:
    """What ``row`` does to ``record``'s allotment, as store operations (none for most rows). The key and
    amount come from the revision's summary: its agency, fiscal year, budget subject and control total."""
    kind = _BUDGET_KINDS.get(row.budget)
    if kind is None:
        return ()
    budget = record.summary["budget"]
    return (BudgetOp(kind, record.voucher_id, record.revision, record.agency, budget["fiscal_year"],
                     budget["subject"], record.summary["control_total"]),)
