"""The treasury operator's decision on a held voucher, in the console with their card: a possible duplicate
payment is held by the treasury checks; the operator, signed in with their card over the Finance Bureau's
connection, sees it and approves it through their signing agent, and it goes on to the bank batch."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from gateway.trust.roles import TREASURY_AGENCY
from simulators.pki.layout import init_pki

from ..conftest import AGENCY_A, NOW
from .softhsm import MODULE, softhsm  # noqa: F401  (a fixture)
from .test_console_pages import TREASURY, fetch
from .test_console_sign_in import SESSION_COOKIE, post
from .test_https_approvals import AMPLE, FISCAL_YEAR, release, status_of, submitted
from .test_https_intake import VGW, Gateway
from .test_signer_agent import Agent


@pytest.fixture(scope="module")
def world(softhsm, tmp_path_factory):
    base = tmp_path_factory.mktemp("treasury-card")
    init_pki(base / "pki", agencies=1, now=NOW)
    softhsm.enroll(base / "pki", TREASURY_AGENCY, "treasury", "treasury-card")
    store = f"sqlite:///{base / 'store.sqlite3'}"
    allotments = base / "allotments.csv"
    allotments.write_text(f"agency,fiscal_year,budget_subject,amount\n{AGENCY_A},{FISCAL_YEAR},{AMPLE},1000000000\n",
                          encoding="utf-8")
    assert subprocess.run([VGW, "budget", "load", "--store", store, str(allotments)], capture_output=True,
                          timeout=60).returncode == 0
    gateway = Gateway(base / "pki", store, base / "serve.log")
    gateway.start()
    gateway.store = store
    origin = f"https://127.0.0.1:{gateway.port}"
    agent = Agent(softhsm, "treasury-card", base / "agent.log", pin_file=softhsm.pin_file, origin=origin)
    yield gateway, agent, origin
    agent.stop()
    gateway.stop()


def test_the_operator_signed_in_with_their_card_decides_a_held_voucher(world, factory, tmp_path):
    gateway, agent, origin = world
    first, first_file = submitted(gateway, factory, tmp_path)
    release(gateway, tmp_path, first, first_file)
    twin, twin_file = submitted(gateway, factory, tmp_path, like=first)
    release(gateway, tmp_path, twin, twin_file)
    assert status_of(gateway, twin.voucher_id)["status"] == "held"
    # the operator signs in with the card over the Finance Bureau's connection
    status, _, page = fetch(gateway, "/console/sign-in", TREASURY)
    token = re.search(rb'data-csrf="([0-9a-f]{64})"', page).group(1).decode()
    status, _, challenge = post(gateway, "/console/sign-in/challenge", {"csrf": token}, origin, who=TREASURY)
    signed = json.loads(agent.ask("POST", "/v1/sign", origin=origin, body=challenge)[2])["signed"]
    status, headers, body = post(gateway, "/console/sign-in", {"csrf": token, "signed": signed}, origin, who=TREASURY)
    assert status == 200 and json.loads(body)["roles"] == ["treasury"], body
    session = headers["set-cookie"].split(";")[0].split("=", 1)[1]
    cookie = {"Cookie": f"{SESSION_COOKIE}={session}"}
    status, _, page = fetch(gateway, f"/console/vouchers/{twin.voucher_id}", TREASURY, headers=cookie)
    assert status == 200 and b'data-stage="treasury"' in page and b'id="approve"' in page
    status, _, document = post(gateway, f"/console/vouchers/{twin.voucher_id}/action-document",
                               {"csrf": token, "stage": "treasury", "decision": "approve"}, origin, who=TREASURY,
                               cookie=session)
    assert status == 200, document
    signed = json.loads(agent.ask("POST", "/v1/sign", origin=origin, body=document)[2])["signed"]
    status, _, answer = post(gateway, f"/console/vouchers/{twin.voucher_id}/actions", {"csrf": token, "signed": signed},
                             origin, who=TREASURY, cookie=session)
    assert status == 202 and json.loads(answer)["outcome"] == "treasury-approve", answer
    assert status_of(gateway, twin.voucher_id)["status"] == "treasury-accepted"
