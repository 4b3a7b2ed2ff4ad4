"""Signed approval actions (``schemas/action.xsd``): the document a person signs to approve a voucher
revision at their stage, or to send it back (退件) with a reason.

Build (for signers' tools and simulators), read (only from the verifier's signed tree) and the whole check
of a received action. Whether the signer may act at that stage, and whether the voucher awaits it, is the
workflow's business (:mod:`gateway.workflow.approvals`); this module answers "is this a well-formed action, signed
by a trusted certificate, and what does it say".
"""

from __future__ import annotations

import datetime
import enum
import re
from dataclasses import dataclass

from lxml import etree

from gateway.errors import Refusal
from gateway.trust.certificates import CertificateIdentity
from gateway.trust.platform import CertificatePlatform
from gateway.vouchers.model import is_revision, is_sha256_hex
from gateway.workflow.transitions import Actor
from gateway.xmlsec.parsing import tree_path
from gateway.xmlsec.signed_document import DEFAULT_SIGNATURE_POLICY, SignaturePolicy, check_signed_document
from gateway.xmlsec.writing import child_writer, utc_seconds_text

NS = "urn:taipei:treasury:action:1"
ACTION_SCHEMA = "action.xsd"
SCHEMA_VERSION = "1.0"
_Q = "{%s}" % NS
_VOUCHER_ID = re.compile(r"[0-9]{9}[A-Z0-9]-[0-9]{3}-[0-9A-Z]{1,12}\Z")

ACTION_STAGES = (Actor.PREPARER, Actor.REVIEWER, Actor.ACCOUNTANT, Actor.HEAD, Actor.RELEASER, Actor.TREASURY)
"""The stages an action can name: the preparer's approval is the voucher itself, so the preparer's only
action is a withdrawal (cancel)."""


class Decision(enum.Enum):
    APPROVE = "approve"
    REJECT = "reject"  # 退件
    CANCEL = "cancel"  # 撤回: the preparer withdraws the voucher


class ReasonCode(enum.Enum):
    """Why a voucher is sent back; the same closed list as action.xsd ReasonCodeType."""

    AMOUNT_WRONG = "amount-wrong"  # 金額錯誤
    PAYEE_WRONG = "payee-wrong"  # 受款人或帳戶錯誤
    BUDGET_SUBJECT_WRONG = "budget-subject-wrong"  # 預算科目錯誤
    SUPPORTING_DOCUMENTS_MISSING = "supporting-documents-missing"  # 原始憑證不全
    PURPOSE_NOT_ALLOWED = "purpose-not-allowed"  # 用途不合法令
    BUDGET_EXCEEDED = "budget-exceeded"  # 超過分配預算
    DUPLICATE_PAYMENT = "duplicate-payment"  # 重複付款
    WITHDRAWN = "withdrawn"  # 撤回
    OTHER = "other"


@dataclass(frozen=True)
class Reason:
    code: ReasonCode
    text: str


@dataclass(frozen=True)
class Action:
    """What an action document says. Validated on construction, so a tool cannot sign a malformed one."""

    voucher_id: str
    revision: int
    voucher_sha256: str
    previous_sha256: str
    stage: Actor
    decision: Decision
    signing_time: datetime.datetime
    reason: Reason | None = None

    def __post_init__(self) -> None:
        if not _VOUCHER_ID.match(self.voucher_id):
            raise ValueError(f"{self.voucher_id!r} is not a voucher id (AGENCY-YEAR-NUMBER)")
        if not is_revision(self.revision):
            raise ValueError(f"a revision is an integer from 1 to 999, not {self.revision!r}")
        if not is_sha256_hex(self.voucher_sha256) or not is_sha256_hex(self.previous_sha256):
            raise ValueError("voucher_sha256 and previous_sha256 must be 64 lowercase hex digits")
        if self.stage not in ACTION_STAGES:
            raise ValueError(f"no action decides the {self.stage.value} stage")
        if (self.reason is None) != (self.decision is Decision.APPROVE):
            raise ValueError("a rejection or cancellation needs a reason and an approval must not carry one")
        if (self.stage is Actor.PREPARER) != (self.decision is Decision.CANCEL):
            raise ValueError("only the preparer cancels, and the preparer's only action is to cancel")
        if self.signing_time.tzinfo is None or self.signing_time.utcoffset() is None:
            raise ValueError("signing_time must be timezone-aware")

    @property
    def action_id(self) -> str:
        """The action's stable id: one decision per stage of one revision, so (voucher, revision, stage)."""
        return action_id(self.voucher_id, self.revision, self.stage)


def action_id(voucher_id: str, revision: int, stage: Actor) -> str:
    return f"{voucher_id}#{revision}/{stage.value}"


# --- writing -----------------------------------------------------------------------------------------------------

_sub = child_writer(NS)


def action_element(action: Action) -> etree._Element:
    """The unsigned action as an element, ready for :func:`gateway.xmlsec.signing.sign_document` with the same
    signing time (to the second)."""
    root = etree.Element(_Q + "Action", nsmap={None: NS})
    root.set("schemaVersion", SCHEMA_VERSION)
    _sub(root, "VoucherId", action.voucher_id)
    _sub(root, "Revision", str(action.revision))
    _sub(root, "VoucherSha256", action.voucher_sha256)
    _sub(root, "PreviousSha256", action.previous_sha256)
    _sub(root, "Stage", action.stage.value)
    _sub(root, "Decision", action.decision.value)
    if action.reason is not None:
        reason = _sub(root, "Reason")
        _sub(reason, "Code", action.reason.code.value)
        _sub(reason, "Text", action.reason.text)
    _sub(root, "SigningTime", utc_seconds_text(action.signing_time))
    return root


# --- reading and checking -----------------------------------------------------------------------------------------

def read_action(root: etree._Element) -> Action:
    """The values of a schema-valid action element (in the gateway: only the verifier's signed root)."""
    fields = {child.tag[len(_Q):]: child for child in root if isinstance(child.tag, str) and child.tag.startswith(_Q)}

    def text(name: str) -> str:
        return (fields[name].text or "").strip()

    reason = None
    if "Reason" in fields:
        parts = {c.tag[len(_Q):]: (c.text or "").strip() for c in fields["Reason"] if isinstance(c.tag, str)}
        reason = Reason(ReasonCode(parts["Code"]), parts["Text"])
    decision = Decision(text("Decision"))
    stage = Actor(text("Stage"))
    if decision is not Decision.APPROVE and reason is None:
        raise Refusal("action-reason-missing", f"a {decision.value} must say why: add Reason with Code and Text",
                      path=tree_path(fields["Decision"]))
    if (stage is Actor.PREPARER) != (decision is Decision.CANCEL):
        raise Refusal("action-decision-invalid", "only the preparer cancels, and the preparer's only action is "
                      f"to cancel (got {decision.value} by the {stage.value})", path=tree_path(fields["Decision"]))
    if decision is Decision.APPROVE and reason is not None:
        raise Refusal("action-reason-forbidden", "an approval carries no Reason; to send the voucher back, "
                      "use Decision reject", path=tree_path(fields["Reason"]))
    try:
        signing_time = datetime.datetime.fromisoformat(text("SigningTime"))
    except ValueError:
        raise Refusal("signature-time-invalid", f"SigningTime {text('SigningTime')!r} is not a date and time",
                      path=tree_path(fields["SigningTime"])) from None
    return Action(voucher_id=text("VoucherId"), revision=int(text("Revision")), voucher_sha256=text("VoucherSha256"),
                  previous_sha256=text("PreviousSha256"), stage=stage, decision=decision,
                  signing_time=signing_time, reason=reason)


@dataclass(frozen=True)
class VerifiedAction:
    action: Action
    signer: CertificateIdentity
    received_sha256: str
    """SHA-256 of the exact bytes received: what the next action in the chain names as its previous."""


def check_signed_action(data: bytes, *, platform: CertificatePlatform, now: datetime.datetime,
                        policy: SignaturePolicy = DEFAULT_SIGNATURE_POLICY) -> VerifiedAction:
    """Accept ``data`` as a well-formed action signed by a trusted, unrevoked certificate; else Refusal.

    The action's SigningTime must equal the signature's XAdES SigningTime to the second: the registry
    judges the signer's role at that time, and two times that disagree would let a signer pick one.
    """
    signed = check_signed_document(data, ACTION_SCHEMA, platform=platform, now=now, policy=policy)
    action = read_action(signed.signed_root)
    if action.signing_time.replace(microsecond=0) != signed.signing_time.replace(microsecond=0):
        raise Refusal("signature-time-invalid", f"SigningTime {utc_seconds_text(action.signing_time)} differs "
                      f"from the signature's XAdES SigningTime {utc_seconds_text(signed.signing_time)}",
                      path="/Action/SigningTime")
    return VerifiedAction(action, signed.certificate.validated.identity, signed.received_sha256)
