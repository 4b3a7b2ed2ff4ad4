"""`vgw signer serve`, the local signing agent, as a real process on loopback with a SoftHSM2 card: it answers
only the configured gateway origins (CORS and the Private Network Access preflight for those alone), only at
its loopback Host, takes only unsigned documents of the gateway's schemas, tells what it signs as read from
the document, signs with the card, and a document changed between the agent and the gateway is refused by
the gateway."""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from adapters.clock import utc_now
from gateway.errors import Refusal
from gateway.vouchers.xml_mapping import read_voucher
from gateway.workflow.actions import (
    Action,
    Decision,
    Reason,
    ReasonCode,
    action_element,
    check_signed_action,
    read_action,
)
from gateway.workflow.transitions import Actor
from gateway.xmlsec.parsing import parse_untrusted
from gateway.xmlsec.signing import sign_document
from simulators.pki.layout import init_pki, load_cert, load_key
from tests.conftest import Pki

from ..conftest import AGENCY_A, NOW
from .softhsm import MODULE, softhsm  # noqa: F401  (a fixture)

VGW = str(Path(sys.executable).parent / "vgw")
GATEWAY = "https://127.0.0.1:8443"
OTHER = "https://evil.example"



class Agent:
    def __init__(self, softhsm, label: str, log: Path, *, pin_file: Path, origin: str = GATEWAY,
                 port: int = 0) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [VGW, "signer", "serve", "--listen", f"127.0.0.1:{port}", "--allow-origin", origin, "--pkcs11-module",
             MODULE,
             "--token-label", label, "--pin-file", str(pin_file)],
            stdout=subprocess.PIPE, stderr=open(log, "wb"), text=True)
        line = self.process.stdout.readline()
        assert line.startswith("vgw signer: ready on http://127.0.0.1:"), log.read_text()
        self.port = int(line.split()[4].rsplit(":", 1)[1])

    def ask(self, method: str, path: str, *, origin: str | None = GATEWAY, body: bytes | None = None,
            headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            sent = {"Origin": origin} if origin else {}
            if body is not None:
                sent["Content-Type"] = "application/xml"
            conn.request(method, path, body=body, headers={**sent, **(headers or {})})
            reply = conn.getresponse()
            return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
        finally:
            conn.close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def world(softhsm, tmp_path_factory):
    """A PKI whose reviewer's key is on the reviewer card, that card behind a running agent, and a voucher
    (signed by the preparer's PEM key) for the reviewer to approve."""
    base = tmp_path_factory.mktemp("agent")
    init_pki(base / "pki", agencies=1, now=NOW)
    softhsm.enroll(base / "pki", AGENCY_A, "reviewer", "accountant-card")
    manifest = json.loads((base / "pki/manifest.json").read_text(encoding="utf-8"))
    unsigned = subprocess.run([VGW, "voucher", "new", "--pki", str(base / "pki"), "--agency", AGENCY_A, "--lines",
                               "4", "--seed", "9"], capture_output=True, check=True, timeout=120).stdout
    preparer = manifest["agencies"][AGENCY_A]["people"]["preparer"]
    voucher = sign_document(unsigned, load_key(Path(preparer["key"])), load_cert(Path(preparer["cert"])), NOW)
    agent = Agent(softhsm, "accountant-card", base / "agent.log", pin_file=softhsm.pin_file)
    yield base, manifest, unsigned, voucher, agent
    agent.stop()


def action_for(voucher: bytes, *, decision=Decision.APPROVE, reason=None, at=None) -> bytes:
    """The unsigned reviewer's action on ``voucher``, to be signed at ``at`` (default now)."""
    root = read_voucher(parse_untrusted(voucher))
    sha = hashlib.sha256(voucher).hexdigest()
    action = Action(voucher_id=root.voucher_id, revision=root.revision, voucher_sha256=sha, previous_sha256=sha,
                    stage=Actor.REVIEWER, decision=decision, signing_time=(at or utc_now()).replace(microsecond=0),
                    reason=reason)
    return etree.tostring(action_element(action), xml_declaration=True, encoding="UTF-8")


def test_only_the_configured_gateway_origin_at_the_loopback_host_is_answered(world):
    *_, agent = world
    for method, path, body in (("GET", "/v1/certificates", None), ("POST", "/v1/sign", b"<x/>"),
                               ("OPTIONS", "/v1/sign", None)):
        for origin in (OTHER, None, GATEWAY + "/", "https://127.0.0.1:8444"):
            status, headers, reply = agent.ask(method, path, origin=origin, body=body)
            assert status == 403 and json.loads(reply)["code"] == "signer-origin-refused", (method, origin)
            assert "access-control-allow-origin" not in headers
    status, headers, reply = agent.ask("GET", "/v1/certificates", headers={"Host": f"evil.example:{agent.port}"})
    assert status == 421 and json.loads(reply)["code"] == "signer-host-refused"
    status, _, reply = agent.ask("GET", "/v1/elsewhere")
    assert status == 404 and json.loads(reply)["code"] == "signer-not-found"


def test_the_private_network_preflight_is_answered_for_the_gateway_alone(world):
    *_, agent = world
    status, headers, _ = agent.ask("OPTIONS", "/v1/sign", headers={"Access-Control-Request-Method": "POST",
                                                                    "Access-Control-Request-Private-Network": "true"})
    assert status == 204 and headers["access-control-allow-origin"] == GATEWAY
    assert headers["access-control-allow-private-network"] == "true" and "POST" in headers["access-control-allow-methods"]
    assert headers["vary"] == "Origin"
    status, headers, _ = agent.ask("OPTIONS", "/v1/sign", origin=OTHER,
                                   headers={"Access-Control-Request-Private-Network": "true"})
    assert status == 403 and "access-control-allow-private-network" not in headers


def test_it_lists_the_cards_certificates_without_a_pin(world):
    _, manifest, *_, agent = world
    status, _, reply = agent.ask("GET", "/v1/certificates")
    [listed] = json.loads(reply)["certificates"]
    cert = load_cert(Path(manifest["agencies"][AGENCY_A]["people"]["reviewer"]["cert"]))
    assert status == 200 and listed["serial"] == format(cert.serial_number, "X") and listed["signs"]
    assert listed["key_usage"] == ["digitalSignature", "nonRepudiation"] and listed["name"]


def test_what_it_says_it_signs_is_what_the_document_says_and_the_gateway_accepts_it(world):
    base, manifest, _, voucher, agent = world
    document = action_for(voucher, decision=Decision.REJECT, reason=Reason(ReasonCode.AMOUNT_WRONG, "金額有誤"))
    status, _, reply = agent.ask("POST", "/v1/sign", body=document)
    assert status == 200, reply
    answer = json.loads(reply)
    signed = answer["signed"].encode("utf-8")
    verified = check_signed_action(signed, platform=Pki(base / "pki", manifest).platform(), now=utc_now())
    said, action = answer["summary"], verified.action
    assert (said["voucher_id"], said["revision"], said["stage"], said["decision"]) == \
        (action.voucher_id, action.revision, action.stage.value, action.decision.value)
    assert said["reason"] == {"code": action.reason.code.value, "text": action.reason.text}
    assert said["voucher_sha256"] == action.voucher_sha256
    assert read_action(parse_untrusted(document)) == action  # signed as posted: nothing changed on the way
    assert verified.signer.serial_hex.lstrip("0") == answer["certificate"]["serial"].lstrip("0")
    assert answer["said"].startswith(f"reject of voucher {action.voucher_id}")
    assert answer["said"] in (base / "agent.log").read_text(encoding="utf-8")  # the agent's log says it too
    # changed between the agent and the gateway: the gateway refuses it
    tampered = signed.replace("金額有誤".encode(), "金額無誤".encode(), 1)
    assert tampered != signed
    with pytest.raises(Refusal) as caught:
        check_signed_action(tampered, platform=Pki(base / "pki", manifest).platform(), now=utc_now())
    assert caught.value.code.startswith("signature-")


def test_a_voucher_is_summarised_from_its_own_lines(world):
    _, _, unsigned, _, agent = world
    status, _, reply = agent.ask("POST", "/v1/sign", body=unsigned)
    voucher = read_voucher(parse_untrusted(unsigned))
    said = json.loads(reply)["summary"]
    assert status == 200 and said == {"kind": "voucher", "voucher_id": voucher.voucher_id, "agency": AGENCY_A,
                                      "revision": voucher.revision, "lines": len(voucher.lines),
                                      "amount": sum(line.amount for line in voucher.lines),
                                      "purpose": voucher.purpose}


@pytest.mark.parametrize("name, body, status, code", [
    ("not ours", b"<Invoice xmlns='urn:x'><Total>1</Total></Invoice>", 422, "signer-document-refused"),
    ("not XML", b"PIN=123456", 422, "xml-malformed"),
    ("a DTD", b"<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>", 422, "xml-forbidden-construct"),
    ("too large", b"<a>" + b"x" * (2 * 1024 * 1024) + b"</a>", 413, "signer-body-too-large"),
])
def test_a_document_that_is_not_ours_is_refused_and_nothing_is_signed(world, name, body, status, code):
    *_, agent = world
    got, _, reply = agent.ask("POST", "/v1/sign", body=body)
    assert (got, json.loads(reply)["code"]) == (status, code), name


def test_an_action_for_another_moment_and_a_signed_one_are_refused(world):
    _, _, _, voucher, agent = world
    stale = action_for(voucher, at=utc_now() - datetime.timedelta(hours=1))
    status, _, reply = agent.ask("POST", "/v1/sign", body=stale)
    assert status == 409 and json.loads(reply)["code"] == "signer-document-stale"
    status, _, reply = agent.ask("POST", "/v1/sign", body=voucher)  # signed by the preparer already
    assert status == 422 and json.loads(reply)["code"] == "signer-document-refused"
    status, _, reply = agent.ask("POST", "/v1/sign", body=action_for(voucher), headers={"Content-Type": "text/plain"})
    assert status == 415 and json.loads(reply)["code"] == "signer-media-type"


def test_with_a_wrong_pin_it_says_so_and_signs_nothing(world, softhsm, tmp_path):
    _, _, _, voucher, _ = world
    wrong = Agent(softhsm, "accountant-card", tmp_path / "wrong.log", pin_file=softhsm.wrong_pin_file)
    try:
        status, _, reply = wrong.ask("POST", "/v1/sign", body=action_for(voucher))
    finally:
        wrong.stop()
    problem = json.loads(reply)
    assert status == 403 and problem["code"] == "token-pin-incorrect" and "tries" in problem["detail"]
    assert "signed with certificate" not in (tmp_path / "wrong.log").read_text(encoding="utf-8")
