"""Refusals probed through the running gateway during ``vgw demo``, as an agency's system would meet them:
an action out of order (the accountant before the reviewer) is refused and changes nothing; a voucher over
its allotment is sent back by the treasury check (``budget-exceeded``). The scarce allotment is loaded with
the day's ample ones (:data:`SCARCE_SUBJECT`, NT$ 1)."""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import replace
from pathlib import Path

from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.rules import roc_year
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.workflow.actions import Action, Decision, Reason, ReasonCode, action_element
from gateway.workflow.transitions import Actor
from gateway.xmlsec.signing import sign_document
from simulators.agency_plans import STAGES
from simulators.demo.report import DemoReport, Outcome
from simulators.mtls_load import Connection
from simulators.pki.layout import load_cert, load_key
from simulators.voucher_factory import VoucherFactory

SCARCE_SUBJECT = "2020202020"
PART = "gateway"


def scarce_allotment(agency: str, today: datetime.date) -> tuple[str, int, str, int]:
    return agency, roc_year(today), SCARCE_SUBJECT, 1


def run_probes(pki_dir: Path, manifest: dict, agency: str, port: int, report: DemoReport, evidence: Path,
               *, today: datetime.date, run_tag: str, poll_until: float) -> None:
    import time

    evidence.mkdir(parents=True, exist_ok=True)
    people = manifest["agencies"][agency]["people"]
    signers = {role: (load_key(Path(e["key"])), load_cert(Path(e["cert"]))) for role, e in people.items()}
    tls = pki_dir / "agencies" / agency / "tls"
    client = Connection(port=port, cafile=str(pki_dir / "root/cert.pem"), cert=str(tls / "cert.pem"),
                        key=str(tls / "key.pem"), timeout=30)
    factory = VoucherFactory(BankDirectory.shipped(), seed=7)

    def code_of(status: int, body: bytes) -> str:
        if status in (200, 202):
            return "accepted"
        try:
            return json.loads(body)["code"]
        except (ValueError, KeyError, TypeError):
            return f"http-{status}"

    def at() -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

    def act(voucher, voucher_data: bytes, previous: bytes, stage: Actor):
        when = at()
        action = Action(voucher_id=voucher.voucher_id, revision=voucher.revision,
                        voucher_sha256=hashlib.sha256(voucher_data).hexdigest(),
                        previous_sha256=hashlib.sha256(previous).hexdigest(), stage=stage,
                        decision=Decision.APPROVE, signing_time=when)
        data = sign_document(action_element(action), *signers[stage.value], when)
        (evidence / f"{voucher.voucher_id}-{stage.value}.xml").write_bytes(data)
        status, body = client.post(f"/v1/vouchers/{voucher.voucher_id}/actions", data)
        return status, body, data

    def submit(voucher) -> bytes | None:
        data = sign_document(voucher_to_xml(voucher), *signers["preparer"], at())
        (evidence / f"{voucher.voucher_id}.xml").write_bytes(data)
        status, body = client.post("/v1/vouchers", data)
        if status != 202:
            report.outcomes.append(Outcome(f"submit-{voucher.voucher_id}", "accepted", code_of(status, body),
                                           body[:200].decode(errors="replace"), PART))
            return None
        return data

    try:
        early = replace(factory.voucher(agency, today=today, voucher_number=f"{run_tag}P00001".rjust(12, "0")),
                        budget_subject="5102020200")
        data = submit(early)
        if data is not None:
            status, body, _ = act(early, data, data, Actor.ACCOUNTANT)
            state = json.loads(client.get(f"/v1/vouchers/{early.voucher_id}")[1])
            report.outcomes.append(Outcome("accountant-before-reviewer", "action-out-of-order", code_of(status, body),
                                           f"HTTP {status}; the voucher stays {state.get('status')}", PART))
            # then the reviewer sends it back as withdrawn (撤回), so it ends in a final state like every voucher
            when = at()
            withdrawal = Action(voucher_id=early.voucher_id, revision=early.revision,
                                voucher_sha256=hashlib.sha256(data).hexdigest(),
                                previous_sha256=hashlib.sha256(data).hexdigest(), stage=Actor.REVIEWER,
                                decision=Decision.REJECT, signing_time=when,
                                reason=Reason(ReasonCode.WITHDRAWN, "示範：撤回"))
            signed = sign_document(action_element(withdrawal), *signers["reviewer"], when)
            status, body = client.post(f"/v1/vouchers/{early.voucher_id}/actions", signed)
            state = json.loads(client.get(f"/v1/vouchers/{early.voucher_id}")[1])
            got = code_of(status, body)
            report.outcomes.append(Outcome("reviewer-withdraws-it", "rejected/withdrawn",
                                           f"{state.get('status')}/{ReasonCode.WITHDRAWN.value}"
                                           if got == "accepted" else got, f"HTTP {status}", PART))
        scarce = replace(factory.voucher(agency, today=today, voucher_number=f"{run_tag}P00002".rjust(12, "0")),
                         budget_subject=SCARCE_SUBJECT)
        data = submit(scarce)
        if data is not None:
            previous, failure = data, None
            for stage in STAGES:
                status, body, previous = act(scarce, data, previous, stage)
                if status != 202:
                    failure = f"{stage.value}: {code_of(status, body)}"
                    break
            got, detail = "?", failure or ""
            while failure is None:
                state = json.loads(client.get(f"/v1/vouchers/{scarce.voucher_id}")[1])
                got = state.get("status", "?")
                if got not in ("received", "released") or time.monotonic() > poll_until:
                    history = state.get("history", [])
                    reason = history[-1].get("reason_code") if history else None
                    got = f"{got}/{reason}" if got == "rejected" and reason else got
                    detail = f"NT${scarce.total_amount:,} against an allotment of NT$1"
                    break
                time.sleep(0.2)  # the treasury check runs right after release; poll it, with a deadline
            report.outcomes.append(Outcome("over-budget", "rejected/budget-exceeded", got, detail, PART))
    finally:
        client.close()
