"""Approving in the console with the card, over real mTLS, with each person's own SoftHSM2 card behind their
own running `vgw signer serve`, the way the page's script does it: one voucher through the four agency stages
by four people, each signed in with their card; a card that is not the signed-in person's, a stage the person
does not hold, and the same person signing twice are refused with their codes and the page's answer says so."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import tomli_w
from cryptography.x509 import NameOID

from adapters.console.sign_in import SESSION_COOKIE
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.xml_mapping import voucher_to_xml
from simulators.pki.layout import init_pki, load_cert
from simulators.voucher_factory import VoucherFactory

from ..conftest import AGENCY_A, NOW
from .softhsm import MODULE, softhsm  # noqa: F401  (a fixture)
from .test_console_pages import fetch, prepared_form
from .test_console_sign_in import post, sign_in
from .test_https_intake import Gateway, call
from .test_signer_agent import Agent

STAGES = ("reviewer", "accountant", "head", "releaser")



@pytest.fixture(scope="module")
def world(softhsm, tmp_path_factory):
    base = tmp_path_factory.mktemp("approvals-console")
    init_pki(base / "pki", agencies=2, now=NOW)
    for role in (*STAGES, "preparer"):
        softhsm.enroll(base / "pki", AGENCY_A, role, f"approvals-{role}")
    # the releaser is also registered as head, so the same person signing two stages of one voucher is refused
    # by separation of duties, not by the registry
    registry_path = base / "pki" / "registry.toml"
    registry = tomllib.loads(registry_path.read_text(encoding="utf-8"))
    releaser = next(g for g in registry["grant"] if g["agency"] == AGENCY_A and g["role"] == "releaser")
    registry["grant"].append({**releaser, "role": "head"})
    reviewer = next(g for g in registry["grant"] if g["agency"] == AGENCY_A and g["role"] == "reviewer")
    registry["grant"].append({**reviewer, "role": "preparer"})  # may prepare too: signs another person's form
    registry_path.write_text(tomli_w.dumps(registry), encoding="utf-8")
    gateway = Gateway(base / "pki", f"sqlite:///{base / 'store.sqlite3'}", base / "serve.log")
    gateway.start()
    origin = f"https://127.0.0.1:{gateway.port}"
    agents = {role: Agent(softhsm, f"approvals-{role}", base / f"agent-{role}.log", pin_file=softhsm.pin_file,
                          origin=origin) for role in (*STAGES, "preparer")}
    manifest = json.loads((base / "pki/manifest.json").read_text(encoding="utf-8"))
    yield gateway, agents, origin, manifest
    for agent in agents.values():
        agent.stop()
    gateway.stop()


def submit_voucher(world, number: str) -> str:
    """A voucher signed with the preparer's card (through their agent) and sent by the agency's system."""
    gateway, agents, origin, _ = world
    voucher = VoucherFactory(BankDirectory.shipped(), seed=3).voucher(AGENCY_A, today=NOW.date(), voucher_number=number)
    status, _, reply = agents["preparer"].ask("POST", "/v1/sign", origin=origin, body=voucher_to_xml(voucher))
    assert status == 200, reply
    status, _, body = call(gateway, "POST", "/v1/vouchers", json.loads(reply)["signed"].encode("utf-8"))
    assert status == 202, body
    return voucher.voucher_id


def page_csrf(gateway, path: str, session: str) -> tuple[str, str]:
    status, _, page = fetch(gateway, path, headers={"Cookie": f"{SESSION_COOKIE}={session}"})
    assert status == 200
    text = page.decode()
    found = re.search(r'data-csrf="([0-9a-f]{64})"', text)
    return text, found.group(1) if found else ""


def decide(gateway, agent, origin, session, voucher_id, stage, decision="approve", **reason):
    """What the page's script does for one button: the unsigned action, the card's signature, the post."""
    text, token = page_csrf(gateway, f"/console/vouchers/{voucher_id}", session)
    status, _, document = post(gateway, f"/console/vouchers/{voucher_id}/action-document",
                               {"csrf": token, "stage": stage, "decision": decision, **reason}, origin, cookie=session)
    assert status == 200, document
    status, _, reply = agent.ask("POST", "/v1/sign", origin=origin, body=document)
    assert status == 200, reply
    signed = json.loads(reply)["signed"]
    status, _, answer = post(gateway, f"/console/vouchers/{voucher_id}/actions", {"csrf": token, "signed": signed},
                             origin, cookie=session)
    return status, answer, text


def test_one_voucher_through_the_four_stages_by_four_people_each_signed_in_with_their_card(world):
    gateway, agents, origin, manifest = world
    voucher_id = submit_voucher(world, "CARD000001")
    sessions = {role: sign_in(gateway, agents[role], origin)[0] for role in STAGES}
    text, _ = page_csrf(gateway, f"/console/vouchers/{voucher_id}", sessions["accountant"])
    assert 'id="approve"' not in text  # it awaits the reviewer, not the accountant
    for role in STAGES:
        text, _ = page_csrf(gateway, f"/console/vouchers/{voucher_id}", sessions[role])
        assert 'id="approve"' in text and f'data-stage="{role}"' in text, role
        status, answer, _ = decide(gateway, agents[role], origin, sessions[role], voucher_id, role)
        assert status == 202, answer
        document = json.loads(answer)
        assert document["outcome"] == f"{role}-approve" and "<Receipt" in document["receipt"]
    status, _, body = call(gateway, "GET", f"/v1/vouchers/{voucher_id}")
    # released, and then past the treasury checks (no allotment here: rejected for its budget, which is theirs)
    assert status == 200 and json.loads(body)["status"] in ("released", "held", "treasury-accepted", "rejected")
    text, _ = page_csrf(gateway, f"/console/vouchers/{voucher_id}", sessions["reviewer"])
    for role in STAGES:  # every stage's signer on the voucher's page, by the name in their card's certificate
        cert = load_cert(Path(manifest["agencies"][AGENCY_A]["people"][role]["cert"]))
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value in text, role


def test_a_role_queue_offers_its_holder_an_approve_button_per_voucher(world):
    gateway, agents, origin, _ = world
    voucher_id = submit_voucher(world, "CARD000005")
    session = sign_in(gateway, agents["reviewer"], origin)[0]
    page, _ = page_csrf(gateway, "/console/queue?role=reviewer", session)
    assert f'id="approve-{voucher_id}"' in page and 'data-stage="reviewer"' in page
    page, _ = page_csrf(gateway, "/console/queue?role=accountant", session)
    assert 'id="queue-approvals"' not in page  # not the reviewer's queue to decide
    status, answer, _ = decide(gateway, agents["reviewer"], origin, session, voucher_id, "reviewer")
    assert status == 202, answer
    page, _ = page_csrf(gateway, "/console/queue?role=reviewer", session)
    assert f'id="approve-{voucher_id}"' not in page


def test_a_card_that_is_not_the_signed_in_persons_is_refused(world):
    gateway, agents, origin, manifest = world
    voucher_id = submit_voucher(world, "CARD000002")
    reviewer_session = sign_in(gateway, agents["reviewer"], origin)[0]
    # the reviewer is signed in, but the accountant's card signs the reviewer's action
    status, answer, _ = decide(gateway, agents["accountant"], origin, reviewer_session, voucher_id, "reviewer")
    assert status == 403 and b"action-signer-not-signed-in" in answer


def test_the_same_person_signing_two_stages_is_refused_and_the_answer_says_so(world):
    gateway, agents, origin, manifest = world
    voucher_id = submit_voucher(world, "CARD000003")
    sessions = {role: sign_in(gateway, agents[role], origin)[0] for role in ("reviewer", "accountant", "releaser")}
    for role in ("reviewer", "accountant"):
        assert decide(gateway, agents[role], origin, sessions[role], voucher_id, role)[0] == 202
    # the releaser also holds head: as head now, and then as releaser of the same voucher
    assert decide(gateway, agents["releaser"], origin, sessions["releaser"], voucher_id, "head")[0] == 202
    status, answer, _ = decide(gateway, agents["releaser"], origin, sessions["releaser"], voucher_id, "releaser")
    assert status == 403 and b"separation-of-duties" in answer


def test_without_signing_in_there_is_no_button_and_no_action(world):
    gateway, _, origin, manifest = world
    voucher_id = submit_voucher(world, "CARD000004")
    status, _, page = fetch(gateway, f"/console/vouchers/{voucher_id}")
    assert status == 200 and b'id="approval"' not in page
    token = re.search(rb'name="csrf" value="([0-9a-f]{64})"|data-csrf="([0-9a-f]{64})"',
                      fetch(gateway, "/console/sign-in")[2])
    status, _, body = post(gateway, f"/console/vouchers/{voucher_id}/action-document",
                           {"csrf": (token.group(1) or token.group(2)).decode(), "stage": "reviewer",
                            "decision": "approve"}, origin)
    assert status == 401 and b"sign-in-required" in body


def test_the_preparation_form_signs_its_voucher_with_the_preparers_card_and_submits_it(world):
    gateway, agents, origin, _ = world
    session = sign_in(gateway, agents["preparer"], origin)[0]
    page, token = page_csrf(gateway, "/console/prepare", session)
    assert 'id="sign-and-submit"' in page
    line = VoucherFactory(BankDirectory.shipped(), seed=5).voucher(AGENCY_A, today=NOW.date()).lines[0]
    form = {**prepared_form(line), "voucher_number": "FORMCARD01", "csrf": token}
    status, _, document = post(gateway, "/console/prepare", form, origin, cookie=session)
    assert status == 200, document
    status, _, reply = agents["preparer"].ask("POST", "/v1/sign", origin=origin, body=document)
    assert status == 200 and json.loads(reply)["summary"]["amount"] == 12345
    signed = json.loads(reply)["signed"]
    status, _, answer = post(gateway, "/console/prepare/submit", {"csrf": token, "signed": signed}, origin,
                             cookie=session)
    assert status == 202 and json.loads(answer)["outcome"] == "accepted", answer
    # a voucher signed by another card (a colleague who may prepare too) than the signed-in preparer's is refused
    other = agents["reviewer"].ask("POST", "/v1/sign", origin=origin, body=document.replace(b"FORMCARD01",
                                                                                             b"FORMCARD02"))
    status, _, answer = post(gateway, "/console/prepare/submit", {"csrf": token, "signed": json.loads(other[2])["signed"]},
                             origin, cookie=session)
    assert status == 403 and b"voucher-signer-not-signed-in" in answer  # the reviewer may prepare, not as them
