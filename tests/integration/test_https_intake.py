"""`vgw serve` over real TLS sockets with client certificates: receipts, duplicates, refusals, restart."""

from __future__ import annotations

import datetime
import http.client
import itertools
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.intake.receipts import verify_receipt
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.pki.layout import init_pki, load_cert, load_key, revoke

from ..conftest import AGENCY_A, AGENCY_B, NOW

VGW = str(Path(sys.executable).parent / "vgw")
MAX_BODY = 300_000


def wait_until_ready(process: subprocess.Popen, log: Path, timeout: float = 120.0) -> str:
    """The line `vgw serve` prints once it accepts connections; fails if the server exits or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        ready = next((line for line in log.read_text(errors="replace").splitlines()
                      if line.startswith("vgw: ready on https://")), None)
        if ready is not None:
            return ready
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"vgw serve did not become ready:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)  # polling the log for the ready line, with a deadline


def https_port(ready: str) -> int:
    """The port in `vgw: ready on https://HOST:PORT ...`."""
    return int(ready.split()[3].rsplit(":", 1)[1])


class Gateway:
    """``vgw serve`` in a process of its own. Its per-agency rate limit is off unless a test names one
    (``rate_limit``; None leaves it to the environment and the defaults): a test that is not about the limit
    must not depend on how fast the machine sends its requests."""

    def __init__(self, pki_dir: Path, store_url: str, log: Path, *, rate_limit: str | None = "0") -> None:
        self.pki_dir, self.store_url, self.log = pki_dir, store_url, log
        self.rate_limit = rate_limit
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self) -> None:
        limit = [] if self.rate_limit is None else ["--rate-limit", self.rate_limit]
        self.process = subprocess.Popen(
            [VGW, "serve", "--pki", str(self.pki_dir), "--listen", "127.0.0.1:0", "--store", self.store_url,
             "--max-body", str(MAX_BODY), "--revocation-max-age", "0", *limit],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        self.port = https_port(wait_until_ready(self.process, self.log))

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.port = None
        self.log.write_text("")  # the next start writes a fresh ready line


def client_context(pki_dir: Path, agency: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki_dir / "root/cert.pem"))
    if agency is not None:
        tls = pki_dir / "agencies" / agency / "tls"
        context.load_cert_chain(str(tls / "cert.pem"), str(tls / "key.pem"))
    return context


def call(gateway: Gateway, method: str, path: str, body: bytes | None = None, agency: str | None = AGENCY_A):
    conn = http.client.HTTPSConnection("127.0.0.1", gateway.port, context=client_context(gateway.pki_dir, agency),
                                       timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/xml"} if body else {})
        reply = conn.getresponse()
        return reply.status, reply.getheader("Content-Type"), reply.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("https")
    init_pki(base / "pki", agencies=3, now=NOW)
    gateway = Gateway(base / "pki", f"sqlite:///{base / 'store.sqlite3'}", base / "serve.log")
    gateway.start()
    yield gateway
    gateway.stop()


_numbers = itertools.count(1)


def signed_voucher(gateway: Gateway, factory, agency: str = AGENCY_A, **kw) -> tuple[object, bytes]:
    """A new voucher (its own number: the store outlives each test) signed by the agency's preparer."""
    voucher = factory.voucher(agency, today=NOW.date(), voucher_number=f"HT{next(_numbers):06d}", **kw)
    person = gateway.pki_dir / "agencies" / agency / "people" / "preparer"
    return voucher, sign_document(voucher_to_xml(voucher), load_key(person / "key.pem"),
                                  load_cert(person / "cert.pem"), NOW)


def problem(body: bytes) -> dict:
    document = json.loads(body)
    assert {"type", "title", "status", "code"} <= set(document)
    return document


def test_a_good_voucher_gets_a_receipt_signed_by_the_gateway_and_a_duplicate_the_same_one(served, factory):
    voucher, data = signed_voucher(served, factory)
    status, content_type, receipt = call(served, "POST", "/v1/vouchers", data)
    assert status == 202 and content_type.startswith("application/xml"), receipt
    gateway_cert = load_cert(served.pki_dir / "gateway/cert.pem")
    read = verify_receipt(receipt, gateway_cert=gateway_cert, now=NOW)
    assert (read.voucher_id, read.revision) == (voucher.voucher_id, voucher.revision)
    again = call(served, "POST", "/v1/vouchers", data)
    assert again[0] == 200 and again[2] == receipt
    status, _, body = call(served, "GET", f"/v1/vouchers/{voucher.voucher_id}")
    assert status == 200 and json.loads(body)["revisions"][0]["status"] == "received"


def test_the_same_revision_with_other_bytes_is_a_conflict(served, factory):
    voucher, data = signed_voucher(served, factory)
    assert call(served, "POST", "/v1/vouchers", data)[0] == 202
    person = served.pki_dir / "agencies" / AGENCY_A / "people" / "preparer"
    other = sign_document(voucher_to_xml(voucher), load_key(person / "key.pem"),
                          load_cert(person / "cert.pem"), NOW.replace(second=(NOW.second + 1) % 60))
    status, content_type, body = call(served, "POST", "/v1/vouchers", other)
    assert status == 409 and content_type == "application/problem+json"
    assert problem(body)["code"] == "duplicate-conflict"


def test_another_agencys_voucher_is_refused_and_hidden(served, factory):
    voucher, data = signed_voucher(served, factory, agency=AGENCY_B)
    status, _, body = call(served, "POST", "/v1/vouchers", data, agency=AGENCY_A)
    assert status == 403 and problem(body)["code"] == "agency-mismatch"
    assert call(served, "POST", "/v1/vouchers", data, agency=AGENCY_B)[0] == 202
    status, _, body = call(served, "GET", f"/v1/vouchers/{voucher.voucher_id}", agency=AGENCY_A)
    assert status == 404 and problem(body)["code"] == "not-found"


def test_without_a_client_certificate_there_is_no_connection(served):
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
        call(served, "GET", "/healthz", agency=None)


def test_a_revoked_agency_certificate_is_refused(served, factory):
    agency = "379000003A"
    revoke(served.pki_dir, load_cert(served.pki_dir / "agencies" / agency / "tls/cert.pem"), now=NOW)
    _, data = signed_voucher(served, factory, agency=agency)
    status, _, body = call(served, "POST", "/v1/vouchers", data, agency=agency)
    assert status == 403 and problem(body)["code"] == "certificate-revoked"


@pytest.mark.parametrize("body, status, code", [
    (b"not xml at all", 422, "xml-malformed"),
    (b'<!DOCTYPE v [<!ENTITY a "x">]><v>&a;</v>', 422, "xml-forbidden-construct"),
    (b"<" * (MAX_BODY + 1), 413, "too-large"),
])
def test_bad_bodies_get_problem_documents_and_change_nothing(served, body, status, code):
    got, content_type, reply = call(served, "POST", "/v1/vouchers", body)
    assert (got, content_type) == (status, "application/problem+json")
    assert problem(reply)["code"] == code and b"Traceback" not in reply


def test_unknown_routes_and_methods_are_problems_not_errors(served):
    status, content_type, body = call(served, "GET", "/v1/nothing-here")
    assert status == 404 and content_type == "application/problem+json" and problem(body)["code"] == "not-found"
    status, _, body = call(served, "DELETE", "/v1/vouchers")
    assert status == 405 and problem(body)["code"] == "method-not-allowed"


def test_everything_accepted_is_still_there_after_a_restart(served, factory):
    voucher, data = signed_voucher(served, factory)
    status, _, receipt = call(served, "POST", "/v1/vouchers", data)
    assert status == 202
    served.stop()
    served.start()
    status, _, body = call(served, "GET", f"/v1/vouchers/{voucher.voucher_id}")
    assert status == 200 and json.loads(body)["revision"] == voucher.revision
    assert call(served, "POST", "/v1/vouchers", data) == (200, "application/xml", receipt)


def test_a_config_file_and_the_environment_configure_the_server(served, tmp_path):
    config = tmp_path / "vgw.toml"
    config.write_text(f'pki = "{served.pki_dir}"\nlisten = "127.0.0.1:0"\n'
                      f'store = "sqlite:///{tmp_path / "other.sqlite3"}"\n', encoding="utf-8")
    log = tmp_path / "serve.log"
    process = subprocess.Popen([VGW, "serve", "--config", str(config)], stdout=open(log, "wb"),
                               stderr=subprocess.STDOUT, env={**os.environ, "VGW_LIMITS_MAX_BODY": "1000"})
    other = Gateway(served.pki_dir, "", log)
    other.process = process
    try:
        other.port = https_port(wait_until_ready(process, log))
        assert "other.sqlite3" in log.read_text()
        status, _, body = call(other, "POST", "/v1/vouchers", b"<" * 2000)
        assert status == 413 and problem(body)["code"] == "too-large"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_valid_client_certificate_of_an_unknown_agency_is_refused(served, factory, tmp_path):
    from simulators.pki.authority import IssueOptions, Profile, name, new_key
    from simulators.pki.layout import load_authority, write_pem_cert, write_pem_key

    state = json.loads((served.pki_dir / "ca-state.json").read_text())
    key = new_key("ec")
    cert = load_authority(served.pki_dir, "intermediate").issue(
        name(cn="unknown agency system", o="臺北市政府", ou="399999999Z"), key.public_key(), Profile.TLS_CLIENT,
        IssueOptions(NOW - datetime.timedelta(days=1), NOW + datetime.timedelta(days=30),
                     crl_url=state["crl_url"]))
    stranger = tmp_path / "agencies" / "399999999Z" / "tls"
    write_pem_cert(stranger / "cert.pem", cert)
    write_pem_key(stranger / "key.pem", key)
    context = ssl.create_default_context(cafile=str(served.pki_dir / "root/cert.pem"))
    context.load_cert_chain(str(stranger / "cert.pem"), str(stranger / "key.pem"))
    _, data = signed_voucher(served, factory)
    conn = http.client.HTTPSConnection("127.0.0.1", served.port, context=context, timeout=30)
    try:
        conn.request("POST", "/v1/vouchers", body=data, headers={"Content-Type": "application/xml"})
        reply = conn.getresponse()
        status, body = reply.status, reply.read()
    finally:
        conn.close()
    assert status == 403 and problem(body)["code"] == "agency-unknown"


def test_a_registry_edit_takes_effect_in_the_running_gateway(tmp_path, factory):
    init_pki(tmp_path / "pki", agencies=1, now=NOW)
    gateway = Gateway(tmp_path / "pki", f"sqlite:///{tmp_path / 'store.sqlite3'}", tmp_path / "serve.log")
    gateway.start()
    try:
        voucher = factory.voucher(AGENCY_A, today=NOW.date(), voucher_number="REG000001")
        head = gateway.pki_dir / "agencies" / AGENCY_A / "people" / "head"
        head_cert = load_cert(head / "cert.pem")
        data = sign_document(voucher_to_xml(voucher), load_key(head / "key.pem"), head_cert, NOW)
        status, _, body = call(gateway, "POST", "/v1/vouchers", data)
        assert status == 403 and problem(body)["code"] == "signer-not-authorised"

        registry = gateway.pki_dir / "registry.toml"
        registry.write_text(registry.read_text(encoding="utf-8") + (
            f'\n[[grant]]\nagency = "{AGENCY_A}"\nrole = "preparer"\nperson = "stand-in"\nkind = "authorised"\n'
            f'acting_for = "the preparer"\ncert_issuer = "{head_cert.issuer.rfc4514_string()}"\n'
            f'cert_serial = "{head_cert.serial_number:X}"\n'
            f"valid_from = {(NOW - datetime.timedelta(days=1)).isoformat()}\n"
            f"valid_to = {(NOW + datetime.timedelta(days=1)).isoformat()}\n"), encoding="utf-8")
        deadline = time.monotonic() + 30
        while "registry reloaded" not in gateway.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, gateway.log.read_text()
            time.sleep(0.1)  # polling the log for the reload line, with a deadline
        assert call(gateway, "POST", "/v1/vouchers", data)[0] == 202
    finally:
        gateway.stop()
