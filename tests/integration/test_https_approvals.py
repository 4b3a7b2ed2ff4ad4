"""The approval workflow through the real HTTPS service: signed actions, queues, history, refusals.

Actions are signed with `vgw action sign` (the CLI contract) and posted over mTLS, as an agency's tool would.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import http.client
import itertools
import json
import ssl
import subprocess
import tomllib
from pathlib import Path

import pytest
import tomli_w

from gateway.intake.receipts import verify_receipt
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.pki.layout import init_pki, load_cert, load_key

from ..conftest import AGENCY_A, NOW
from .test_https_intake import VGW, Gateway, call, problem

STAGES = ("reviewer", "accountant", "head", "releaser")
FISCAL_YEAR = NOW.year - 1911
AMPLE, SCARCE = "1010101010", "2020202020"
"""Budget subjects of agency A: one with NT$ 1 billion allotted, one with NT$ 1."""
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("approvals")
    init_pki(base / "pki", agencies=2, now=NOW)
    # The reviewer of agency A is also registered as its accountant (a person may hold two roles), so the
    # same person signing two stages of one voucher is refused by separation of duties, not by the registry.
    registry_path = base / "pki" / "registry.toml"
    registry = tomllib.loads(registry_path.read_text(encoding="utf-8"))
    reviewer = next(g for g in registry["grant"] if g["agency"] == AGENCY_A and g["role"] == "reviewer"
                    and g["kind"] == "principal")
    registry["grant"].append({**reviewer, "role": "accountant"})
    registry_path.write_text(tomli_w.dumps(registry), encoding="utf-8")
    store = f"sqlite:///{base / 'store.sqlite3'}"
    gateway = Gateway(base / "pki", store, base / "serve.log")
    gateway.start()
    allotments = base / "allotments.csv"
    allotments.write_text(f"agency,fiscal_year,budget_subject,amount\n{AGENCY_A},{FISCAL_YEAR},{AMPLE},1000000000\n"
                          f"{AGENCY_A},{FISCAL_YEAR},{SCARCE},1\n", encoding="utf-8")
    loaded = subprocess.run([VGW, "budget", "load", "--store", store, str(allotments)], capture_output=True,
                            text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    gateway.store = store
    yield gateway
    gateway.stop()


def budget(gateway: Gateway, subject: str) -> dict:
    shown = subprocess.run([VGW, "budget", "show", "--store", gateway.store, "--json"], capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    return next(row for row in json.loads(shown.stdout) if row["budget_subject"] == subject)


def call_as_treasury(gateway: Gateway, method: str, path: str, body: bytes | None = None):
    context = ssl.create_default_context(cafile=str(gateway.pki_dir / "root/cert.pem"))
    tls = gateway.pki_dir / "treasury" / "tls"
    context.load_cert_chain(str(tls / "cert.pem"), str(tls / "key.pem"))
    conn = http.client.HTTPSConnection("127.0.0.1", gateway.port, context=context, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/xml"} if body else {})
        reply = conn.getresponse()
        return reply.status, reply.getheader("Content-Type"), reply.read()
    finally:
        conn.close()


def person(gateway: Gateway, role: str, agency: str = AGENCY_A) -> Path:
    return gateway.pki_dir / "agencies" / agency / "people" / role


def sign_action(tmp_path: Path, gateway: Gateway, *, signer: Path, voucher: Path | str, stage: str,
                previous: Path | None = None, reject: tuple[str, str] | None = None) -> Path:
    out = tmp_path / f"{stage}-{signer.name}-{hashlib.sha256(str(voucher).encode()).hexdigest()[:6]}.xml"
    command = [VGW, "action", "sign", "--key", str(signer / "key.pem"), "--cert", str(signer / "cert.pem"),
               "--voucher", str(voucher), "--stage", stage, "--out", str(out)]
    command += ["--reject", reject[0], "--reason", reject[1]] if reject else ["--approve"]
    if previous is not None:
        command += ["--previous", str(previous)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return out


def post_action(gateway: Gateway, voucher_id: str, action: Path, agency: str = AGENCY_A):
    return call(gateway, "POST", f"/v1/vouchers/{voucher_id}/actions", action.read_bytes(), agency=agency)


def submitted(gateway: Gateway, factory, tmp_path: Path, *, subject: str = AMPLE, like=None) -> tuple[object, Path]:
    """A new voucher of agency A on ``subject`` (or with the same lines and purpose as ``like``), submitted."""
    voucher = factory.voucher(AGENCY_A, today=NOW.date(), voucher_number=f"AP{next(_numbers):06d}")
    voucher = dataclasses.replace(voucher, budget_subject=subject)
    if like is not None:
        voucher = dataclasses.replace(voucher, lines=like.lines, line_count=like.line_count,
                                      total_amount=like.total_amount, purpose=like.purpose)
    who = person(gateway, "preparer")
    data = sign_document(voucher_to_xml(voucher), load_key(who / "key.pem"), load_cert(who / "cert.pem"), NOW)
    assert call(gateway, "POST", "/v1/vouchers", data)[0] == 202
    path = tmp_path / f"{voucher.voucher_id}-{voucher.revision}.xml"
    path.write_bytes(data)
    return voucher, path


def status_of(gateway: Gateway, voucher_id: str) -> dict:
    status, _, body = call(gateway, "GET", f"/v1/vouchers/{voucher_id}")
    assert status == 200, body
    return json.loads(body)


def test_four_signed_stages_release_the_voucher_with_receipts_queues_and_history(served, factory, tmp_path):
    voucher, voucher_file = submitted(served, factory, tmp_path)
    gateway_cert = load_cert(served.pki_dir / "gateway/cert.pem")
    previous = None
    expected = {"reviewer": "reviewed", "accountant": "accountant-approved", "head": "head-approved",
                "releaser": "released"}
    for stage in STAGES:
        queue = json.loads(call(served, "GET", f"/v1/queues/{stage}")[2])
        mine = next(item for item in queue["items"] if item["voucher_id"] == voucher.voucher_id)
        assert mine["overdue"] is False and mine["due_on"] >= NOW.date().isoformat(), mine
        action = sign_action(tmp_path, served, signer=person(served, stage), stage=stage, previous=previous,
                             voucher=voucher_file if previous is None else voucher.voucher_id)
        status, content_type, receipt = post_action(served, voucher.voucher_id, action)
        assert status == 202 and content_type.startswith("application/xml"), receipt
        read = verify_receipt(receipt, gateway_cert=gateway_cert, now=datetime.datetime.now(datetime.timezone.utc))
        assert read.action is not None and read.action.voucher_status == expected[stage]
        assert read.received_sha256 == hashlib.sha256(action.read_bytes()).hexdigest()
        assert post_action(served, voucher.voucher_id, action)[2] == receipt  # a retry: the original receipt
        queue = json.loads(call(served, "GET", f"/v1/queues/{stage}")[2])
        assert voucher.voucher_id not in [item["voucher_id"] for item in queue["items"]]
        previous = action
    state = status_of(served, voucher.voucher_id)
    assert state["status"] == "treasury-accepted"
    roles = [(item["role"], item["result"]) for item in state["history"]]
    assert roles == [("preparer", "received"), ("reviewer", "reviewed"), ("accountant", "accountant-approved"),
                     ("head", "head-approved"), ("releaser", "released"), ("treasury-check", "treasury-accepted")]


def release(gateway: Gateway, tmp_path: Path, voucher, voucher_file: Path) -> Path:
    """The four agency stages, each by its own holder; the releaser's action (the chain head) is returned."""
    previous = None
    for stage in STAGES:
        previous = sign_action(tmp_path, gateway, signer=person(gateway, stage), stage=stage, previous=previous,
                               voucher=voucher_file if previous is None else voucher.voucher_id)
        status, _, body = post_action(gateway, voucher.voucher_id, previous)
        assert status == 202, body
    return previous


def test_release_reserves_the_amount_and_over_the_allotment_the_treasury_sends_it_back(served, factory, tmp_path):
    before = budget(served, AMPLE)["reserved"]
    voucher, voucher_file = submitted(served, factory, tmp_path)
    release(served, tmp_path, voucher, voucher_file)
    assert budget(served, AMPLE)["reserved"] == before + voucher.total_amount

    scarce, scarce_file = submitted(served, factory, tmp_path, subject=SCARCE)
    release(served, tmp_path, scarce, scarce_file)
    state = status_of(served, scarce.voucher_id)
    assert state["status"] == "rejected"
    assert (state["history"][-1]["role"], state["history"][-1]["reason_code"]) == ("treasury-check", "budget-exceeded")
    assert budget(served, SCARCE) == {**budget(served, SCARCE), "allotted": 1, "reserved": 0, "consumed": 0}
    rejections = json.loads(call(served, "GET", "/v1/rejections")[2])["items"]
    assert scarce.voucher_id in [item["voucher_id"] for item in rejections]


def test_a_possible_duplicate_payment_is_held_until_a_treasury_operator_decides(served, factory, tmp_path):
    first, first_file = submitted(served, factory, tmp_path)
    release(served, tmp_path, first, first_file)
    twin, twin_file = submitted(served, factory, tmp_path, like=first)
    releaser_action = release(served, tmp_path, twin, twin_file)
    state = status_of(served, twin.voucher_id)
    assert state["status"] == "held" and state["history"][-1]["reason_code"] == "duplicate-payment"
    queue = json.loads(call_as_treasury(served, "GET", "/v1/queues/treasury")[2])
    assert twin.voucher_id in [item["voucher_id"] for item in queue["items"]]
    # Agency A's own system cannot decide for the treasury; the treasury operator can.
    operator = served.pki_dir / "treasury" / "people" / "treasury"
    decision = sign_action(tmp_path, served, signer=operator, stage="treasury", voucher=twin.voucher_id,
                           previous=releaser_action)
    status, _, body = post_action(served, twin.voucher_id, decision)
    assert status == 403 and problem(body)["code"] == "agency-mismatch"
    status, _, receipt = call_as_treasury(served, "POST", f"/v1/vouchers/{twin.voucher_id}/actions",
                                          decision.read_bytes())
    assert status == 202, receipt
    assert status_of(served, twin.voucher_id)["status"] == "treasury-accepted"


def test_out_of_order_wrong_person_and_same_person_twice_are_refused_and_change_nothing(served, factory, tmp_path):
    voucher, voucher_file = submitted(served, factory, tmp_path)
    # The accountant cannot act before the reviewer.
    early = sign_action(tmp_path, served, signer=person(served, "accountant"), stage="accountant",
                        voucher=voucher_file)
    status, _, body = post_action(served, voucher.voucher_id, early)
    assert status == 409 and problem(body)["code"] == "action-out-of-order"
    # The head's certificate cannot sign as reviewer.
    wrong = sign_action(tmp_path, served, signer=person(served, "head"), stage="reviewer", voucher=voucher_file)
    status, _, body = post_action(served, voucher.voucher_id, wrong)
    assert status == 403 and problem(body)["code"] == "signer-not-authorised"
    # The reviewer approves; the same person, who is also registered as accountant, then tries the next
    # stage: separation of duties refuses it.
    reviewed = sign_action(tmp_path, served, signer=person(served, "reviewer"), stage="reviewer", voucher=voucher_file)
    assert post_action(served, voucher.voucher_id, reviewed)[0] == 202
    again = sign_action(tmp_path, served, signer=person(served, "reviewer"), stage="accountant",
                        voucher=voucher.voucher_id, previous=reviewed)
    status, _, body = post_action(served, voucher.voucher_id, again)
    assert status == 403 and problem(body)["code"] == "separation-of-duties"
    # A broken chain (the accountant names the voucher instead of the review) is refused too.
    unchained = sign_action(tmp_path, served, signer=person(served, "accountant"), stage="accountant",
                            voucher=voucher_file)
    status, _, body = post_action(served, voucher.voucher_id, unchained)
    assert status == 409 and problem(body)["code"] == "action-chain-broken"
    assert status_of(served, voucher.voucher_id)["status"] == "reviewed"
    assert [item["role"] for item in status_of(served, voucher.voucher_id)["history"]] == ["preparer", "reviewer"]


def test_a_deputy_who_reviewed_cannot_also_sign_another_stage(served, factory, tmp_path):
    """The PKI's deputy is registered as reviewer only; registering them also as accountant (in the same
    registry) would be caught by separation of duties — proven in the unit tests. Here: a deputy's review
    counts as the reviewer stage, and the voucher moves on."""
    voucher, voucher_file = submitted(served, factory, tmp_path)
    deputy = sign_action(tmp_path, served, signer=person(served, "deputy"), stage="reviewer", voucher=voucher_file)
    status, _, receipt = post_action(served, voucher.voucher_id, deputy)
    assert status == 202, receipt
    history = status_of(served, voucher.voucher_id)["history"]
    assert history[-1]["role"] == "reviewer" and history[-1]["result"] == "reviewed"


def test_a_rejection_goes_back_to_the_preparer_and_a_correction_starts_the_stages_again(served, factory, tmp_path,
                                                                                        sign_voucher_for):
    voucher, voucher_file = submitted(served, factory, tmp_path)
    reviewed = sign_action(tmp_path, served, signer=person(served, "reviewer"), stage="reviewer", voucher=voucher_file)
    assert post_action(served, voucher.voucher_id, reviewed)[0] == 202
    rejected = sign_action(tmp_path, served, signer=person(served, "accountant"), stage="accountant",
                           voucher=voucher.voucher_id, previous=reviewed,
                           reject=("amount-wrong", "第 2 行金額與契約不符"))
    status, _, receipt = post_action(served, voucher.voucher_id, rejected)
    assert status == 202, receipt
    state = status_of(served, voucher.voucher_id)
    assert state["status"] == "rejected" and state["history"][-1]["reason_code"] == "amount-wrong"
    assert voucher.voucher_id in [i["voucher_id"] for i in json.loads(call(served, "GET", "/v1/queues/preparer")[2])["items"]]
    assert voucher.voucher_id in [i["voucher_id"] for i in json.loads(call(served, "GET", "/v1/rejections")[2])["items"]]

    correction = sign_voucher_for(served, factory.correction(voucher))
    assert call(served, "POST", "/v1/vouchers", correction)[0] == 202
    state = status_of(served, voucher.voucher_id)
    assert (state["revision"], state["status"], state["current_stage"]) == (2, "received", "reviewer")
    assert [r["status"] for r in state["revisions"]] == ["superseded", "received"]
    # The old revision's chain is closed: no more actions on it.
    late = sign_action(tmp_path, served, signer=person(served, "head"), stage="head", voucher=voucher.voucher_id,
                       previous=rejected)
    status, _, body = post_action(served, voucher.voucher_id, late)
    assert status == 409 and problem(body)["code"] == "voucher-not-pending"


def test_actions_on_another_agencys_voucher_are_not_found(served, factory, tmp_path):
    voucher, voucher_file = submitted(served, factory, tmp_path)
    action = sign_action(tmp_path, served, signer=person(served, "reviewer"), stage="reviewer", voucher=voucher_file)
    status, _, body = post_action(served, voucher.voucher_id, action, agency="379000002A")
    assert status == 404 and problem(body)["code"] == "not-found"
    assert status_of(served, voucher.voucher_id)["status"] == "received"


@pytest.fixture
def sign_voucher_for():
    from gateway.vouchers.xml_mapping import voucher_to_xml
    from gateway.xmlsec.signing import sign_document
    from simulators.pki.layout import load_key

    def sign(gateway: Gateway, voucher) -> bytes:
        who = person(gateway, "preparer")
        return sign_document(voucher_to_xml(voucher), load_key(who / "key.pem"), load_cert(who / "cert.pem"), NOW)

    return sign


def test_the_preparer_may_withdraw_a_voucher_before_release_and_nothing_moves_it_afterwards(served, factory,
                                                                                            tmp_path):
    voucher, voucher_file = submitted(served, factory, tmp_path)
    reviewed = sign_action(tmp_path, served, signer=person(served, "reviewer"), stage="reviewer", voucher=voucher_file)
    assert post_action(served, voucher.voucher_id, reviewed)[0] == 202
    # A reviewer cannot cancel; the preparer who signed the voucher can (a withdrawal approves nothing).
    out = tmp_path / "cancel.xml"
    who = person(served, "preparer")
    signed = subprocess.run([VGW, "action", "sign", "--key", str(who / "key.pem"), "--cert", str(who / "cert.pem"),
                             "--voucher", voucher.voucher_id, "--previous", str(reviewed), "--stage", "preparer",
                             "--cancel", "--reason", "契約解除，不再付款", "--out", str(out)],
                            capture_output=True, text=True, timeout=60)
    assert signed.returncode == 0, signed.stderr
    status, _, receipt = post_action(served, voucher.voucher_id, out)
    assert status == 202, receipt
    read = verify_receipt(receipt, gateway_cert=load_cert(served.pki_dir / "gateway/cert.pem"),
                          now=datetime.datetime.now(datetime.timezone.utc))
    assert (read.action.decision, read.action.voucher_status) == ("cancel", "cancelled")
    state = status_of(served, voucher.voucher_id)
    assert state["status"] == "cancelled" and state["history"][-1]["reason_code"] == "withdrawn"
    late = sign_action(tmp_path, served, signer=person(served, "accountant"), stage="accountant",
                       voucher=voucher.voucher_id, previous=out)
    status, _, body = post_action(served, voucher.voucher_id, late)
    assert status == 409 and problem(body)["code"] == "voucher-not-pending"


def test_a_new_voucher_may_replace_one_sent_back_once_and_never_a_live_one(served, factory, tmp_path):
    rejected, rejected_file = submitted(served, factory, tmp_path)
    refusal = sign_action(tmp_path, served, signer=person(served, "reviewer"), stage="reviewer", voucher=rejected_file,
                          reject=("payee-wrong", "帳號錯誤，請以新憑單重開"))
    assert post_action(served, rejected.voucher_id, refusal)[0] == 202
    live, _ = submitted(served, factory, tmp_path)

    def replacement(of) -> tuple[object, bytes]:
        voucher = dataclasses.replace(factory.voucher(AGENCY_A, today=NOW.date(), voucher_number=f"AP{next(_numbers):06d}"),
                                      budget_subject=AMPLE, corrects=of.ref)
        who = person(served, "preparer")
        return voucher, sign_document(voucher_to_xml(voucher), load_key(who / "key.pem"), load_cert(who / "cert.pem"),
                                      NOW)

    new, data = replacement(rejected)
    status, _, receipt = call(served, "POST", "/v1/vouchers", data)
    assert status == 202, receipt
    old = status_of(served, rejected.voucher_id)
    assert old["status"] == "superseded" and old["history"][-1]["role"] == "gateway"
    assert status_of(served, new.voucher_id)["status"] == "received"
    second, data = replacement(rejected)
    status, _, body = call(served, "POST", "/v1/vouchers", data)
    assert status == 409 and problem(body)["code"] == "revision-not-accepted"
    _, data = replacement(live)
    status, _, body = call(served, "POST", "/v1/vouchers", data)
    assert status == 409 and "is received" in problem(body)["detail"]
    assert status_of(served, live.voucher_id)["status"] == "received"
