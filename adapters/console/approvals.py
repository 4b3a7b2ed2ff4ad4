"""Approving, sending back and withdrawing in the console, signed with the person's card.

A person signed in with their card (adapters/console/sign_in.py) who holds the stage the voucher awaits sees
approve / reject (the closed list of 退件 reasons, with text) on its page; the preparer sees withdraw
(撤回). The page's script asks the gateway for the unsigned action — bound to the stored voucher bytes'
digest and to the revision's chain head, as every action is — hands it to the person's signing agent,
and posts the signed action here. The gateway gives it no shortcut: it goes through the same action service
as ``POST /v1/vouchers/{id}/actions`` (profile, chain, revocation, role at signing time, deputies,
separation of duties, chain of digests), and the certificate that signed must be the one the person signed
in with (``action-signer-not-signed-in``): a card passed around an office does not act in someone else's
session. The answer is the receipt, or the refusal with its code.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from lxml import etree

from adapters.console.html import Markup, field, select
from adapters.console.sign_in import SIGNER_SCRIPT
from adapters.console.view import Reply, View
from gateway.errors import Refusal
from gateway.workflow.actions import Action, Decision, Reason, ReasonCode, action_element
from gateway.workflow.transitions import AWAITING, Actor, Event, Status, transition

STAGE_DECISIONS = {"approve": Decision.APPROVE, "reject": Decision.REJECT, "cancel": Decision.CANCEL}
SEND_BACK_REASONS = tuple(code for code in ReasonCode if code is not ReasonCode.WITHDRAWN)


def awaited_stage(status: str) -> Actor | None:
    """The stage a voucher in ``status`` awaits a signature of, if any."""
    try:
        return AWAITING.get(Status(status))
    except ValueError:
        return None


def withdrawable(status: str) -> bool:
    try:
        transition(Status(status), Event.CANCEL, Actor.PREPARER)
        return True
    except (Refusal, ValueError):
        return False


class ApprovalPages:
    """The approval panel and its two POSTs; expects ``store``, ``actions`` (the ActionService), ``csrf``,
    ``clock``, ``sessions``, ``visible_revisions`` (the agency pages') and ``signer_data`` (the sign-in pages')
    on the console."""

    def approval_panel(self, view: View, latest) -> Markup:
        """What the signed-in person may sign on ``latest`` (the voucher's latest revision), or nothing."""
        viewer, t = view.viewer, view.t
        if not viewer.person or self.actions is None:
            return Markup("")
        stage = awaited_stage(latest.status)
        can_decide = stage is not None and stage.value in viewer.roles and (
            stage is not Actor.TREASURY) == (not viewer.treasury)
        can_withdraw = "preparer" in viewer.roles and not viewer.treasury and withdrawable(latest.status)
        if not (can_decide or can_withdraw):
            return Markup("")
        common = self._action_data(view, latest.voucher_id)
        parts = []
        if can_decide:
            reasons = [(code.value, t.get(f"reason_{code.value}", code.value)) for code in SEND_BACK_REASONS]
            parts.append(Markup(
                '<p><button type="button" class="sign-action" id="approve" data-stage="{stage}" data-decision="approve" '
                '{common}>{approve}</button></p><p>{reason}{text}<button type="button" class="sign-action" id="reject" '
                'data-stage="{stage}" data-decision="reject" {common}>{reject}</button></p>').format(
                stage=stage.value, common=common, approve=t["approve"], reject=t["reject"],
                reason=select("reason_code", t["reason"], reasons, ""), text=field("reason_text", t["reason_text"], "")))
        if can_withdraw:
            parts.append(Markup(
                '<p>{text}<button type="button" class="sign-action" id="withdraw" data-stage="preparer" '
                'data-decision="cancel" {common}>{withdraw}</button></p>').format(
                text=field("withdraw_text", t["reason_text"], ""), common=common, withdraw=t["withdraw"]))
        return (Markup('<section id="approval"><h2>{}</h2>').format(t["your_decision"]) + Markup("").join(parts)
                + SIGNER_SCRIPT + Markup("</section>"))

    def queue_buttons(self, view: View, role: str, records) -> Markup:
        """On a role's queue, for a signed-in holder of that role: an approve button per voucher (sending back
        needs a reason: on the voucher's page), signed through the agent like the voucher page's."""
        viewer, t = view.viewer, view.t
        if not viewer.person or self.actions is None or role not in viewer.roles or role == "preparer" \
                or (role == "treasury") != viewer.treasury or not records:
            return Markup("")
        rows = Markup("").join(Markup(
            '<li>{id} <button type="button" class="sign-action" id="approve-{id}" data-stage="{role}" '
            'data-decision="approve" {data}>{approve}</button></li>').format(
            id=r.voucher_id, role=role, data=self._action_data(view, r.voucher_id), approve=t["approve"])
            for r in records)
        return (Markup('<section id="approval"><h2>{}</h2><ul id="queue-approvals">').format(t["your_decision"])
                + rows + Markup("</ul>") + SIGNER_SCRIPT + Markup("</section>"))

    def _action_data(self, view: View, voucher_id: str) -> Markup:
        path = f"/console/vouchers/{quote(voucher_id)}"
        return self.signer_data(view, f"{path}/action-document", f"{path}/actions")

    def action_document_submit(self, view: View, voucher_id: str) -> Reply:
        """The unsigned action the person is about to sign (the page hands it to their agent)."""
        self._signed_in(view)
        latest = self.visible_revisions(view, voucher_id)[-1]
        decision = STAGE_DECISIONS.get(view.args.get("decision", ""))
        if decision is None:
            raise Refusal("form-invalid", "decision is approve, reject or cancel")
        try:
            stage = Actor(view.args.get("stage", ""))
        except ValueError:
            raise Refusal("form-invalid", "stage is one of the workflow's stages") from None
        reason = None
        if decision is Decision.REJECT:
            try:
                code = ReasonCode(view.args.get("reason_code", ""))
            except ValueError:
                raise Refusal("form-invalid", "a send-back needs one of the listed reasons") from None
            reason = Reason(code, (view.args.get("reason_text") or "").strip() or code.value)
        elif decision is Decision.CANCEL:
            reason = Reason(ReasonCode.WITHDRAWN, (view.args.get("reason_text") or "").strip() or "撤回")
        action = Action(voucher_id=latest.voucher_id, revision=latest.revision, voucher_sha256=latest.received_sha256,
                        previous_sha256=latest.chain_sha256, stage=stage, decision=decision,
                        signing_time=self.clock().replace(microsecond=0), reason=reason)
        return Reply(200, etree.tostring(action_element(action), xml_declaration=True, encoding="UTF-8"),
                     "application/xml")

    def action_submit(self, view: View, voucher_id: str) -> Reply:
        """The signed action, through the same action service as the API, signed by the signed-in person."""
        self._signed_in(view)
        signed = (view.args.get("signed") or "").encode("utf-8")
        if not signed:
            raise Refusal("form-invalid", "post the signed action as 'signed'")
        answer = self.actions.submit_action_as(view.viewer.agency, signed, posted_to=voucher_id,
                                               signer=(view.viewer.cert_issuer, view.viewer.cert_serial))
        document = {"status": answer.status, "outcome": answer.outcome,
                    "receipt": answer.body.decode("utf-8") if answer.status < 300 else None}
        return Reply(answer.status, json.dumps(document, ensure_ascii=False).encode("utf-8"), "application/json")

    def prepare_sign_submit(self, view: View) -> Reply:
        """A voucher the preparation form built and the signed-in preparer's card signed: taken in as the
        agency's accounting system's would be, signed by exactly that card."""
        self._signed_in(view)
        signed = (view.args.get("signed") or "").encode("utf-8")
        if not signed:
            raise Refusal("form-invalid", "post the signed voucher as 'signed'")
        answer = self.intake.submit_voucher_as(view.viewer.agency, signed,
                                               signer=(view.viewer.cert_issuer, view.viewer.cert_serial))
        document = {"status": answer.status, "outcome": answer.outcome, "voucher_id": answer.voucher_id,
                    "receipt": answer.body.decode("utf-8")}
        return Reply(answer.status, json.dumps(document, ensure_ascii=False).encode("utf-8"), "application/json")

    def _signed_in(self, view: View) -> None:
        if not view.viewer.person:
            raise Refusal("sign-in-required", "sign in with your card first (/console/sign-in)")
