"""Signing in to the console with the card, over real mTLS and a real signing agent on a SoftHSM2 card, the
way the page's script does it (no browser here; tests/integration/test_console_browser.py drives one): a
challenge from the gateway, signed by the agent, posted back, a session that names the person; a replayed
challenge, someone of another agency, a revoked card and a challenge for another site refused with their
codes; signing out ends the session."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from pathlib import Path

import pytest
from cryptography.x509 import NameOID

from adapters.clock import utc_now
from adapters.console.sign_in import SESSION_COOKIE
from gateway.errors import Refusal
from gateway.sign_in.challenge import Challenge, challenge_document, check_sign_in
from gateway.xmlsec.signing import sign_document
from simulators.pki.layout import init_pki, load_cert, load_key
from tests.conftest import Pki

from ..conftest import AGENCY_A, AGENCY_B, NOW
from .softhsm import MODULE, softhsm  # noqa: F401  (a fixture)
from .test_console_pages import fetch
from .test_https_intake import VGW, Gateway
from .test_signer_agent import Agent


@pytest.fixture(scope="module")
def world(softhsm, tmp_path_factory):
    base = tmp_path_factory.mktemp("sign-in")
    init_pki(base / "pki", agencies=2, now=NOW)
    softhsm.enroll(base / "pki", AGENCY_A, "accountant", "spare-card")
    gateway = Gateway(base / "pki", f"sqlite:///{base / 'store.sqlite3'}", base / "serve.log")
    gateway.start()
    origin = f"https://127.0.0.1:{gateway.port}"
    agent = Agent(softhsm, "spare-card", base / "agent.log", pin_file=softhsm.pin_file, origin=origin)
    manifest = json.loads((base / "pki/manifest.json").read_text(encoding="utf-8"))
    yield gateway, agent, origin, manifest
    agent.stop()
    gateway.stop()


def csrf(gateway, who=AGENCY_A) -> str:
    status, _, body = fetch(gateway, "/console/sign-in", who)
    assert status == 200
    return re.search(rb'data-csrf="([0-9a-f]{64})"', body).group(1).decode()


def post(gateway, path: str, fields: dict, origin: str, who=AGENCY_A, cookie: str | None = None):
    headers = {"Origin": origin, **({"Cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else {})}
    return fetch(gateway, path, who, form=fields, headers=headers)


def challenge(gateway, origin: str, who=AGENCY_A) -> tuple[str, bytes]:
    token = csrf(gateway, who)
    status, headers, body = post(gateway, "/console/sign-in/challenge", {"csrf": token}, origin, who)
    assert status == 200 and headers["content-type"] == "application/xml", body
    return token, body


def sign_in(gateway, agent, origin: str) -> tuple[str, dict, str]:
    """What the page's script does: challenge, the agent signs, post it back. (token, answer, signed)."""
    token, document = challenge(gateway, origin)
    status, _, reply = agent.ask("POST", "/v1/sign", origin=origin, body=document)
    assert status == 200, reply
    signed = json.loads(reply)["signed"]
    status, headers, body = post(gateway, "/console/sign-in", {"csrf": token, "signed": signed}, origin)
    assert status == 200, body
    cookie = headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    return cookie.split(";")[0].split("=", 1)[1], json.loads(body), signed


def test_a_person_signs_in_with_their_card_and_every_page_names_them(world):
    gateway, agent, origin, manifest = world
    session, answer, _ = sign_in(gateway, agent, origin)
    cert = load_cert(Path(manifest["agencies"][AGENCY_A]["people"]["accountant"]["cert"]))
    name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert answer["person"] == name and answer["roles"] == ["accountant"] and answer["agency"] == AGENCY_A
    status, _, page = fetch(gateway, "/console/", headers={"Cookie": f"{SESSION_COOKIE}={session}"})
    assert status == 200 and f'<strong id="person">{name}</strong>' in page.decode()
    # the session is this agency connection's: the same cookie over agency B's connection names nobody
    status, _, page = fetch(gateway, "/console/", AGENCY_B, headers={"Cookie": f"{SESSION_COOKIE}={session}"})
    assert status == 200 and 'id="person"' not in page.decode()
    assert f"sign in to {origin}" in (agent.log.read_text(encoding="utf-8"))  # what the agent said it signed


def test_a_challenge_is_used_once(world):
    gateway, agent, origin, _ = world
    _, _, signed = sign_in(gateway, agent, origin)
    status, _, body = post(gateway, "/console/sign-in", {"csrf": csrf(gateway), "signed": signed}, origin)
    assert status == 409 and b"sign-in-replayed" in body


def test_someone_of_another_agency_cannot_sign_in_through_this_agencys_connection(world):
    gateway, agent, origin, manifest = world
    token, document = challenge(gateway, origin)
    person = manifest["agencies"][AGENCY_B]["people"]["reviewer"]
    signed = sign_document(document, load_key(Path(person["key"])), load_cert(Path(person["cert"])), utc_now())
    status, _, body = post(gateway, "/console/sign-in", {"csrf": token, "signed": signed.decode()}, origin)
    assert status == 403 and b"sign-in-not-registered" in body


def test_a_challenge_signed_for_another_site_is_refused_by_the_agent_and_by_the_gateway(world):
    gateway, agent, origin, manifest = world
    token, document = challenge(gateway, origin)
    status, _, reply = agent.ask("POST", "/v1/sign", origin=origin, body=document.replace(origin.encode(),
                                                                                          b"https://evil.example"))
    assert status == 422 and json.loads(reply)["code"] == "signer-document-refused"
    person = manifest["agencies"][AGENCY_A]["people"]["preparer"]
    forged = document.replace(origin.encode(), b"https://evil.example")
    signed = sign_document(forged, load_key(Path(person["key"])), load_cert(Path(person["cert"])), utc_now())
    status, _, body = post(gateway, "/console/sign-in", {"csrf": token, "signed": signed.decode()}, origin)
    assert status == 403 and b"sign-in-origin-mismatch" in body


def test_signing_out_ends_the_session(world):
    gateway, agent, origin, _ = world
    session, _, _ = sign_in(gateway, agent, origin)
    cookie = {"Cookie": f"{SESSION_COOKIE}={session}"}
    status, _, page = fetch(gateway, "/console/sign-in", headers=cookie)
    token = re.search(rb'name="csrf" value="([0-9a-f]{64})"', page).group(1).decode()
    status, headers, _ = post(gateway, "/console/sign-out", {"csrf": token}, origin, cookie=session)
    assert status == 200 and headers["set-cookie"].startswith(f"{SESSION_COOKIE}=;")
    status, _, page = fetch(gateway, "/console/", headers=cookie)
    assert 'id="person"' not in page.decode()


def test_an_expired_challenge_or_one_signed_by_a_revoked_card_opens_nothing(world, tmp_path):
    gateway, _, origin, manifest = world
    pki = Pki(gateway.pki_dir, manifest)
    person = manifest["agencies"][AGENCY_A]["people"]["head"]
    key, cert = load_key(Path(person["key"])), load_cert(Path(person["cert"]))
    now = utc_now().replace(microsecond=0)
    old = Challenge(origin, "A" * 43, now - datetime.timedelta(minutes=10), now - datetime.timedelta(minutes=7))
    signed = sign_document(challenge_document(old), key, cert, now - datetime.timedelta(minutes=9))
    with pytest.raises(Refusal) as caught:
        check_sign_in(signed, origin=origin, agency=AGENCY_A, platform=pki.platform(), now=now)
    assert caught.value.code == "sign-in-expired"
    token, document = challenge(gateway, origin)
    assert subprocess.run([VGW, "pki", "revoke", str(gateway.pki_dir), person["cert"]], capture_output=True,
                          timeout=60).returncode == 0
    signed = sign_document(document, key, cert, utc_now())
    status, _, body = post(gateway, "/console/sign-in", {"csrf": token, "signed": signed.decode()}, origin)
    assert status == 403 and b"certificate-revoked" in body
