"""The intake use case, one blocking call per HTTP request: who is calling, is the voucher good, is it new,
store it with its audit entry in one transaction, answer with the gateway-signed receipt.

Runs in a worker thread (see adapters/http/site.py). Refusals propagate as :class:`~gateway.errors.Refusal`
and become problem documents; nothing is stored unless everything passed, and a receipt is only returned
after the store committed it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime

from cryptography import x509
from twisted.logger import Logger

from adapters.clock import utc_now
from adapters.http.client_identity import agency_of_client
from adapters.http.query_params import ListQuery
from adapters.http.site import Answer
from adapters.notices.status import notice_history, with_notices
from gateway.bank.iso_codes import describe_reason
from gateway.bank.store import PaymentRow
from gateway.errors import Refusal
from gateway.intake.decision import Accept, Duplicate, PriorRevision, Submission, decide_intake
from gateway.intake.receipts import build_receipt, new_receipt_id, sign_receipt
from gateway.store import (
    AlreadyStored,
    AuditEntry,
    IntakeRecord,
    StatusChanged,
    StoreError,
    VoucherStore,
    received_intake,
    utc_text,
)
from gateway.trust.certificates import Purpose
from gateway.trust.platform import CertificatePlatform
from gateway.trust.roles import Role
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.check import check_signed_voucher
from gateway.workflow.approvals import supersede_write
from gateway.workflow.transitions import AWAITING, Status
from gateway.workflow.working_days import DateOutsideCalendar, WorkingDayCalendar
from gateway.xmlsec.signing import SignerKey

log = Logger(namespace="vgw.intake")

RECEIPT_XML = "application/xml"
REJECTED = "rejected"
RETURNED = "returned"


class IntakeService:
    def __init__(self, *, platform: CertificatePlatform, banks: BankDirectory, store: VoucherStore,
                 gateway_key: SignerKey, gateway_cert: x509.Certificate,
                 clock: Callable[[], datetime] = utc_now, calendar: WorkingDayCalendar | None = None) -> None:
        self.calendar = calendar if calendar is not None else WorkingDayCalendar.shipped()
        self.amqp_intake = None
        """The AMQP consumer when ``vgw serve`` also takes vouchers over AMQP (set once it has started)."""
        self.platform = platform
        self.banks = banks
        self.store = store
        self.gateway_key = gateway_key
        self.gateway_cert = gateway_cert
        self.clock = clock

    def calling_agency(self, client_cert: x509.Certificate | None, now: datetime) -> str:
        """Check the TLS client certificate (chain, clientAuth, revocation) and name its agency."""
        if client_cert is None:
            raise Refusal("client-certificate-required", "a client certificate is required")
        checked = self.platform.check(client_cert, Purpose.TLS_CLIENT, now)
        agency = agency_of_client(client_cert)
        if agency is None or not self._known(agency):
            raise Refusal("agency-unknown", f"the client certificate {checked.validated.identity.subject} "
                          "names no agency known to the registry")
        return agency

    def _known(self, agency: str) -> bool:
        return agency in self.platform.registry.agencies

    def submit_voucher(self, body: bytes, client_cert: x509.Certificate | None) -> Answer:
        """Intake over HTTPS: the TLS client certificate names the calling agency."""
        now = self.clock()
        return self._submit(self.calling_agency(client_cert, now), body, now)

    def submit_voucher_as(self, agency: str, body: bytes, *, signer: tuple[str | None, str | None] | None = None
                          ) -> Answer:
        """Intake for a caller another transport has authenticated (AMQP: the broker-validated user_id,
        mapped to an agency by the operator; the console: the agency connection a person signed in over).
        The agency must still be known to the role registry. With ``signer`` (issuer, serial) the voucher must
        be signed by exactly that certificate: the person signed in to the console."""
        if not self._known(agency):
            raise Refusal("agency-unknown", f"the caller's agency {agency} is not known to the role registry")
        return self._submit(agency, body, self.clock(), signer=signer)

    def _submit(self, agency: str, body: bytes, now: datetime, *,
                signer: tuple[str | None, str | None] | None = None) -> Answer:
        verified = check_signed_voucher(body, platform=self.platform, banks=self.banks, role=Role.PREPARER, now=now)
        identity = verified.signer.identity
        if signer is not None and (identity.issuer, identity.serial_hex) != signer:
            raise Refusal("voucher-signer-not-signed-in", "the voucher is signed by another card than the one of "
                          "the person signed in; sign in with your own card")
        voucher = verified.voucher
        if voucher.agency_code != agency:
            raise Refusal("agency-mismatch", f"agency {agency} may not submit vouchers of agency "
                          f"{voucher.agency_code}")
        submission = Submission.of(verified)
        decision = self._decide(submission)
        if isinstance(decision, Duplicate):
            return Answer(200, RECEIPT_XML, decision.original_receipt, voucher_id=voucher.voucher_id,
                          outcome="duplicate")
        if not isinstance(decision, Accept):
            raise decision.refusal
        receipt_id = new_receipt_id(voucher.voucher_id, voucher.revision, verified.received_sha256)
        signed_receipt = sign_receipt(build_receipt(verified, receipt_id=receipt_id, received_at=now),
                                      self.gateway_key, self.gateway_cert, now)
        record, event = received_intake(verified, body=body, agency=agency, at=now, receipt_id=receipt_id,
                                        receipt_xml=signed_receipt, detail={"correction_of": decision.correction_of}
                                        | ({"re_remits": decision.re_remits} if decision.re_remits else {}),
                                        due_on=self._due_on(now, voucher))
        also = None
        if decision.correction_of is not None:
            rejected = self.store.get(voucher.voucher_id, decision.correction_of)
            also = supersede_write(rejected, voucher.revision, now)
        elif decision.replaces is not None:
            replaced = self.store.get(decision.replaces.voucher_id, decision.replaces.revision)
            also = supersede_write(replaced, voucher.revision, now, by_voucher=voucher.voucher_id)
        try:
            self.store.record_intake(record, event, also)
        except (AlreadyStored, StatusChanged):
            # Between our read and our write another request stored this revision, or moved the revision this
            # one corrects or replaces; nothing was stored. Decide again on what is stored now: the same bytes
            # are a duplicate, other bytes a conflict.
            return self._decided_again(submission)
        return Answer(202, RECEIPT_XML, signed_receipt, {"Location": f"/v1/vouchers/{voucher.voucher_id}"},
                      voucher_id=voucher.voucher_id, outcome="accepted")

    def _decided_again(self, submission: Submission) -> Answer:
        decision = self._decide(submission)
        if isinstance(decision, Duplicate):
            return Answer(200, RECEIPT_XML, decision.original_receipt, voucher_id=submission.voucher_id,
                          outcome="duplicate")
        if isinstance(decision, Accept):
            raise Refusal("voucher-busy", f"{submission.voucher_id} changed while it was stored; send it again")
        raise decision.refusal

    def _decide(self, submission: Submission):
        """The intake decision on what the store holds now: this voucher's revisions and, for a replacement
        of another voucher, that voucher's status."""
        replaced_status = None
        ref = submission.corrects
        if ref is not None and ref.voucher_id != submission.voucher_id:
            replaced = self.store.get(ref.voucher_id, ref.revision)
            replaced_status = replaced.status if replaced is not None else None
        return decide_intake(submission, self._history(submission.voucher_id), replaced_status)

    def _due_on(self, now: datetime, voucher) -> date | None:
        """The voucher's deadline; None (logged for operators) when the calendar does not reach that far, which
        means a new holiday file is due: a guessed deadline would be worse than none."""
        try:
            return self.calendar.due_date(now, voucher.urgency)
        except DateOutsideCalendar as exc:
            log.error("no deadline for {voucher_id}: {error}; load a newer working-day calendar",
                      voucher_id=voucher.voucher_id, error=str(exc))
            return None

    def _history(self, voucher_id: str) -> list[PriorRevision]:
        return [PriorRevision(revision=r.revision, received_sha256=r.received_sha256, rejected=r.status == REJECTED,
                              returned=r.status == RETURNED, receipt=r.receipt_xml)
                for r in self.store.revisions(voucher_id)]

    def voucher_status(self, voucher_id: str, client_cert: x509.Certificate | None) -> Answer:
        """Status and revisions of one of the caller's own vouchers; anyone else's is simply not found."""
        agency = self.calling_agency(client_cert, self.clock())
        revisions = self.store.revisions(voucher_id)
        if not revisions or revisions[-1].agency != agency:
            raise Refusal("not-found", f"no voucher {voucher_id} of agency {agency}")
        latest = revisions[-1]
        awaiting = AWAITING.get(Status(latest.status))
        return Answer.json(200, {
            "voucher_id": voucher_id, "agency": agency, "revision": latest.revision, "status": latest.status,
            "current_stage": awaiting.value if awaiting else None,
            "status_since": utc_text(latest.status_at), "chain_sha256": latest.chain_sha256,
            "due_on": latest.due_on.isoformat() if latest.due_on else None,
            "control_total": latest.summary.get("control_total"), "line_count": latest.summary.get("line_count"),
            "revisions": [{"revision": r.revision, "status": r.status, "received_at": utc_text(r.received_at),
                           "receipt_id": r.receipt_id, "received_sha256": r.received_sha256} for r in revisions],
            "history": [item for r in revisions for item in history_items(r.revision, self.store.history(r.subject))],
            "payments": with_notices(
                [payment_item(row) for r in revisions for row in self.store.payments_of(r.voucher_id, r.revision)],
                [row for r in revisions for row in self.store.notices_of(r.voucher_id, r.revision)]),
        })

    def list_vouchers(self, query: ListQuery, client_cert: x509.Certificate | None) -> Answer:
        """One page of the caller's voucher revisions, oldest received first (one item per revision)."""
        agency = self.calling_agency(client_cert, self.clock())
        records, next_cursor = self.store.list_for_agency(
            agency, status=query.status, received_from=query.received_from, received_to=query.received_to,
            after=query.cursor, limit=query.limit)
        return Answer.json(200, {"items": [_list_item(r) for r in records], "next_cursor": next_cursor})

    def list_rejections(self, query: ListQuery, client_cert: x509.Certificate | None) -> Answer:
        """One page of the caller's vouchers sent back (退件) and awaiting correction: those whose LATEST
        revision is rejected. A page may hold fewer than ``limit`` items (rejected revisions already
        corrected are skipped) while ``next_cursor`` still names more."""
        agency = self.calling_agency(client_cert, self.clock())
        records, next_cursor = self.store.list_for_agency(
            agency, status=REJECTED, received_from=query.received_from, received_to=query.received_to,
            after=query.cursor, limit=query.limit)
        awaiting = []
        for record in records:
            latest = self.store.get(record.voucher_id)
            if latest is not None and latest.revision == record.revision:
                awaiting.append(_list_item(record))
        return Answer.json(200, {"items": awaiting, "next_cursor": next_cursor})

    def readiness(self) -> Answer:
        """200 when the store answers and, where this gateway also takes vouchers over AMQP, its consumer is
        connected; otherwise 503 ``not-ready``, so that an orchestrator holds traffic and alerts instead of
        agencies' messages piling up unanswered. ``amqp_intake`` (an :class:`~adapters.amqp.intake.AmqpIntake`)
        is set by ``vgw serve`` when AMQP is configured; ``connected`` is a flag, safe from this worker thread.
        A store that fails its round trip is ``not-ready`` too (logged): an outage, not a bug of ours."""
        if self.amqp_intake is not None and not self.amqp_intake.connected:
            answer = Answer.problem(Refusal("not-ready", "the AMQP intake is not connected to its broker; it is "
                                            "reconnecting"), "/readyz")
            return Answer(answer.status, answer.content_type, answer.body, {"Retry-After": "5"}, outcome="not-ready")
        try:
            self.store.revisions("readiness-probe")  # a round trip to the store
        except StoreError as exc:
            log.warn("readiness: the store does not answer: {error}", error=str(exc))
            answer = Answer.problem(Refusal("not-ready", "the store does not answer"), "/readyz")
            return Answer(answer.status, answer.content_type, answer.body, {"Retry-After": "5"}, outcome="not-ready")
        return Answer(200, "application/json", json.dumps({"status": "ready"}).encode())


def history_items(revision: int, entries: list[AuditEntry]) -> list[dict]:
    """A revision's history as agencies see it: each event's time, the actor's role and the result (the
    status it led to), with the reason of a rejection. Read from the audit log itself, so the two agree;
    certificate details stay in the audit log."""
    items = []
    for entry in entries:
        detail = entry.event.detail
        item = {"at": utc_text(entry.event.at), "revision": revision, "event": entry.event.action,
                "role": detail.get("role"), "result": detail.get("status"), "audit_seq": entry.seq}
        if "reason_code" in detail:
            item["reason_code"] = detail["reason_code"]
            item["reason"] = detail.get("reason")
        if "notice_state" in detail:  # a deposit notice's outcome (adapters/notices/status.py)
            item.update(notice_history(detail))
        items.append(item)
    return items


def payment_item(row: PaymentRow) -> dict:
    """One payment line as its agency sees it at the bank: its EndToEndId, state, and for a 退匯 the ISO
    reason with its meaning, so the agency knows what to correct before it re-remits."""
    return {"revision": row.revision, "line": row.line_number, "end_to_end_id": row.end_to_end_id,
            "amount": row.amount, "state": row.state.value, "message_id": row.message_id,
            "bank_reference": row.bank_reference, "booked_on": row.booked_on.isoformat() if row.booked_on else None,
            "reason_code": row.reason_code, "reason": describe_reason(row.reason_code, row.reason_text),
            "unconfirmed": row.unconfirmed_at is not None}


def _list_item(record: IntakeRecord) -> dict:
    return {"voucher_id": record.voucher_id, "revision": record.revision, "status": record.status,
            "received_at": utc_text(record.received_at), "receipt_id": record.receipt_id,
            "control_total": record.summary.get("control_total"), "line_count": record.summary.get("line_count")}
