"""The approval use case: a signed action in, the workflow step stored with its audit entry, a receipt out.

One blocking call per request (HTTP worker thread or AMQP consumer), like intake: check the caller and
the signed action, read the revision's flow, let the pure core decide (:func:`gateway.workflow.approvals.decide_action`),
then store the action, the status change and the audit event in ONE transaction whose compare-and-set on
(status, chain head) makes a concurrent decision on the same state lose cleanly; the loser decides again
on what is stored now. A receipt is returned only after the commit.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from cryptography import x509

from adapters.clock import utc_now
from adapters.http.site import Answer
from gateway.business_time import TAIPEI
from gateway.errors import Refusal
from gateway.intake.receipts import ActionOutcome, Receipt, new_receipt_id, sign_receipt
from gateway.store import (
    ActionAlreadyStored,
    ActionRecord,
    AuditEvent,
    IntakeRecord,
    StatusChange,
    StatusChanged,
    VoucherStore,
    WorkflowWrite,
    actor_of,
    utc_text,
)
from gateway.trust.roles import TREASURY_AGENCY, Role
from gateway.workflow.actions import VerifiedAction, check_signed_action
from gateway.workflow.approvals import Step, budget_ops, decide_action, flow_of
from gateway.workflow.transitions import QUEUE_OF, Actor

RECEIPT_XML = "application/xml"
MAX_ATTEMPTS = 5
"""How often a decision is retried when another process moved the same revision meanwhile."""


class ActionService:
    def __init__(self, *, intake, store: VoucherStore, clock: Callable[[], datetime.datetime] = utc_now,
                 after_commit: Callable[[IntakeRecord, Step], None] | None = None) -> None:
        """``intake`` is the :class:`~adapters.services.intake.IntakeService` (caller identity, platform, gateway
        key); ``after_commit`` is told of every stored step (queue events, the treasury checks)."""
        self.intake = intake
        self.store = store
        self.clock = clock
        self.after_commit = after_commit

    def submit_action(self, voucher_id: str, body: bytes, client_cert: x509.Certificate | None) -> Answer:
        """An action over HTTPS: the TLS client certificate names the caller, the URL the voucher."""
        now = self.clock()
        return self._submit(self.intake.calling_agency(client_cert, now), body, now, posted_to=voucher_id)

    def submit_action_as(self, agency: str, body: bytes, *, posted_to: str | None = None,
                         signer: tuple[str | None, str | None] | None = None) -> Answer:
        """An action for a caller another transport has authenticated (AMQP: the broker-validated user_id,
        mapped to an agency by the operator; the console: the agency connection a person signed in over);
        the voucher is the one the signed action names (and, with ``posted_to``, the one addressed). The
        agency must still be known to the role registry. With ``signer`` (issuer, serial), the action must be
        signed by exactly that certificate: the person signed in to the console (``action-signer-not-signed-in``)."""
        if agency not in self.intake.platform.registry.agencies:
            raise Refusal("agency-unknown", f"the caller's agency {agency} is not known to the role registry")
        return self._submit(agency, body, self.clock(), posted_to=posted_to, signer=signer)

    def _submit(self, caller: str, body: bytes, now: datetime.datetime, *, posted_to: str | None = None,
                signer: tuple[str | None, str | None] | None = None) -> Answer:
        """Check, decide, store and answer one action of ``caller``; ``posted_to`` is the voucher id the
        transport addressed (the URL's), which the action must name, or None where only the action names it."""
        verified = check_signed_action(body, platform=self.intake.platform, now=now)
        if signer is not None and (verified.signer.issuer, verified.signer.serial_hex) != signer:
            raise Refusal("action-signer-not-signed-in", "the action is signed by another card than the one of the "
                          "person signed in; sign in with your own card", path="/Action")
        action = verified.action
        voucher_id = action.voucher_id
        if posted_to is not None and voucher_id != posted_to:
            raise Refusal("action-voucher-mismatch", f"the action is about {voucher_id}, but was posted to "
                          f"{posted_to}", path="/Action/VoucherId")
        if (action.stage is Actor.TREASURY) != (caller == TREASURY_AGENCY):
            raise Refusal("agency-mismatch", "treasury decisions come only from the treasury's system, and agency "
                          f"stages only from the agency's own ({caller} sent a {action.stage.value} action)")
        for _ in range(MAX_ATTEMPTS):
            record = self._visible(caller, voucher_id, action.revision)
            existing = self.store.actions_at(voucher_id, action.revision, action.stage.value)
            if existing is not None:
                return _repeat(existing, verified)
            step = decide_action(flow_of(record, self.store.actions(voucher_id, action.revision)), verified,
                                 self.intake.platform.registry)
            write, receipt = self._write(record, verified, step, now, body)
            try:
                self.store.apply_workflow(write)
            except ActionAlreadyStored as exc:
                return _repeat(exc.existing, verified)
            except StatusChanged:
                continue
            if self.after_commit is not None:
                self.after_commit(record, step)
            return Answer(202, RECEIPT_XML, receipt, {"Location": f"/v1/vouchers/{voucher_id}"},
                          voucher_id=voucher_id, outcome=f"{action.stage.value}-{action.decision.value}")
        raise Refusal("voucher-busy", f"{voucher_id} changed {MAX_ATTEMPTS} times while this action was decided; "
                      "send it again")

    def queue(self, role: str, client_cert: x509.Certificate | None, limit: int = 100) -> Answer:
        """What awaits ``role`` in the caller's agency (the treasury: in every agency), oldest first."""
        caller = self.intake.calling_agency(client_cert, self.clock())
        try:
            status = QUEUE_OF[Actor(role)]
        except (ValueError, KeyError):
            known = ", ".join(actor.value for actor in QUEUE_OF)
            raise Refusal("not-found", f"there is no {role!r} queue; queues: {known}") from None
        agency = None if caller == TREASURY_AGENCY else caller
        records = self.store.queue(status.value, agency=agency, limit=limit)
        today = self.clock().astimezone(TAIPEI).date()
        return Answer.json(200, {"role": role, "status": status.value,
                                 "items": [_queue_item(r, today) for r in records]})

    def _visible(self, caller: str, voucher_id: str, revision: int) -> IntakeRecord:
        """The revision if the caller may act on it: its own agency's, or any for the treasury."""
        record = self.store.get(voucher_id, revision)
        if record is None or caller not in (record.agency, TREASURY_AGENCY):
            raise Refusal("not-found", f"no revision {revision} of voucher {voucher_id} of agency {caller}")
        return record

    def _write(self, record: IntakeRecord, verified: VerifiedAction, step: Step, now: datetime.datetime,
               body: bytes) -> tuple[WorkflowWrite, bytes]:
        action = verified.action
        signer = verified.signer
        row = step.transition
        receipt_id = new_receipt_id(record.voucher_id, record.revision, verified.received_sha256)
        receipt = sign_receipt(Receipt(
            receipt_id=receipt_id, voucher_id=record.voucher_id, revision=record.revision, agency=record.agency,
            received_sha256=verified.received_sha256, received_at=now, signer_serial=signer.serial_hex,
            signer_issuer=signer.issuer, signer_role=Role(action.stage.value),
            action=ActionOutcome(Role(action.stage.value), action.decision.value, row.target.value),
        ), self.intake.gateway_key, self.intake.gateway_cert, now)
        reason = action.reason
        stored = ActionRecord(
            voucher_id=record.voucher_id, revision=record.revision, stage=action.stage.value, agency=record.agency,
            decision=action.decision.value, action_sha256=verified.received_sha256, action_bytes=bytes(body),
            signed_at=action.signing_time, received_at=now, person=step.grant.person,
            key_sha256=signer.key_sha256, certificate=actor_of(signer), grant_kind=step.grant.kind.value,
            receipt_id=receipt_id, receipt_xml=receipt, status_after=row.target.value,
            reason_code=reason.code.value if reason else None, reason_text=reason.text if reason else None)
        change = StatusChange(record.voucher_id, record.revision, expected_status=record.status,
                              expected_chain=record.chain_sha256, new_status=row.target.value,
                              new_chain=verified.received_sha256, at=now)
        detail = {"role": action.stage.value, "decision": action.decision.value, "status": row.target.value,
                  "from": row.source.value, "person": step.grant.person, "grant": step.grant.kind.value,
                  "receipt_id": receipt_id}
        if step.grant.acting_for:
            detail["acting_for"] = step.grant.acting_for
        if reason is not None:
            detail["reason_code"] = reason.code.value
            detail["reason"] = reason.text
        event = AuditEvent(at=now, actor=actor_of(signer), action=f"action.{action.decision.value}",
                           subject=record.subject, document_sha256=verified.received_sha256, detail=detail)
        return WorkflowWrite(changes=(change,), events=(event,), action=stored,
                             budget=budget_ops(row, record)), receipt


def _queue_item(record: IntakeRecord, today: datetime.date) -> dict:
    """One queue entry; ``overdue`` once the due day has ended in Taipei (gateway.workflow.working_days.is_overdue)."""
    return {"voucher_id": record.voucher_id, "revision": record.revision, "agency": record.agency,
            "status": record.status, "waiting_since": utc_text(record.status_at),
            "received_at": utc_text(record.received_at), "urgency": record.summary.get("urgency"),
            "due_on": record.due_on.isoformat() if record.due_on else None,
            "overdue": record.due_on is not None and record.due_on < today,
            "control_total": record.summary.get("control_total"), "chain_sha256": record.chain_sha256}


def _repeat(existing: ActionRecord, verified: VerifiedAction) -> Answer:
    """A second action for a stage already decided: the same bytes get the original receipt (a retry),
    other bytes a conflict — one decision per stage, and a decision is never replaced."""
    if existing.action_sha256 == verified.received_sha256:
        return Answer(200, RECEIPT_XML, existing.receipt_xml, voucher_id=existing.voucher_id, outcome="duplicate")
    raise Refusal("duplicate-conflict", f"the {existing.stage} stage of {existing.subject} was already decided "
                  f"({existing.decision}) by another signed action (SHA-256 {existing.action_sha256})",
                  path="/Action/Stage")

