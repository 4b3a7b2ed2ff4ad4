"""The approval workflow through the real HTTPS service: signed actions, queues, history, refusals.

Actions are signed with `vgw action sign` (the CLI contract) and posted over mTLS, as an agency's tool would.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import tomli_w
import tomllib

from gateway.receipts import verify_receipt
from simulators.pki.layout import init_pki, load_cert

from ..conftest import AGENCY_A, NOW
from .test_https_intake import VGW, Gateway, call, problem, signed_voucher

STAGES = ("reviewer", "accountant", "head", "releaser")


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
    gateway = Gateway(base / "pki", f"sqlite:///{base / 'store.sqlite3'}", base / "serve.log")
    gateway.start()
    yield gateway
    gateway.stop()


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


def submitted(gateway: Gateway, factory, tmp_path: Path, **kw) -> tuple[object, Path]:
    voucher, data = signed_voucher(gateway, factory, **kw)
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
        assert voucher.voucher_id in [item["voucher_id"] for item in queue["items"]], stage
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
    assert state["status"] in ("released", "treasury-accepted", "held")
    roles = [(item["role"], item["result"]) for item in state["history"]]
    assert roles[:5] == [("preparer", "received"), ("reviewer", "reviewed"), ("accountant", "accountant-approved"),
                         ("head", "head-approved"), ("releaser", "released")]


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
    from gateway.signing import sign_document
    from gateway.voucher_xml import voucher_to_xml
    from simulators.pki.layout import load_key

    def sign(gateway: Gateway, voucher) -> bytes:
        who = person(gateway, "preparer")
        return sign_document(voucher_to_xml(voucher), load_key(who / "key.pem"), load_cert(who / "cert.pem"), NOW)

    return sign
