"""The test PKI's OCSP responder and CRL server as a real process on 127.0.0.1, asked by the real fetchers.

One PKI and one responder per module; the certificates' AIA points at the responder's port, so
``RevocationChecker`` finds it exactly as it finds MOICA's in production. Certificates that need a dead
responder are minted by the PKI's intermediate CA with their AIA/CDP pointing at a closed port.
"""

from __future__ import annotations

import base64
import datetime
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from adapters.serve.revocation_fetchers import FileCrlFetcher, HttpCrlFetcher, HttpOcspFetcher
from gateway.errors import Refusal
from gateway.ports import RevocationFetchError
from gateway.trust.revocation import RevocationChecker, RevocationStatus, check_crl_authentic, evaluate_ocsp, load_crl
from simulators.pki.authority import IssueOptions, Profile, name, new_key
from simulators.pki.layout import init_pki, load_authority, load_cert, load_state, revoke

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
DAY = datetime.timedelta(days=1)
REPO = Path(__file__).resolve().parents[2]
AGENCY = "379000001A"
UNKNOWN_SERIAL = 0x7E57_0000_0000_0001


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_responder(pki_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    """``python -m simulators.pki.ocsp_responder DIR --port P``, returned once the port accepts connections."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "simulators.pki.ocsp_responder", str(pki_dir),
                                    "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the responder exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            if time.monotonic() > deadline:
                stop(process)
                raise RuntimeError(f"the responder did not listen on {port}:\n{log_path.read_text()}") from None
            time.sleep(0.05)  # polling for readiness, not waiting for luck


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Served:
    dir: Path
    port: int
    log: Path
    manifest: dict

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def intermediate(self) -> x509.Certificate:
        return load_cert(self.dir / "intermediate/cert.pem")

    def person(self, role: str) -> x509.Certificate:
        return load_cert(Path(self.manifest["agencies"][AGENCY]["people"][role]["cert"]))

    def mint(self, *, ocsp_url: str | None, crl_url: str | None = None, serial: int | None = None):
        """A citizen certificate from the PKI's intermediate that ``ca-state.json`` has never heard of."""
        key = new_key("ec")
        return load_authority(self.dir, "intermediate").issue(
            name(cn="臨時測試"), key.public_key(), Profile.CITIZEN,
            IssueOptions(not_before=NOW - DAY, not_after=NOW + 30 * DAY, ocsp_url=ocsp_url, crl_url=crl_url,
                         serial=serial))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    # The responder dates its answers by the wall clock, and they are judged at NOW: NOW is this module's
    # start, not the import's, which a long suite leaves minutes behind ("dated in the future").
    global NOW
    NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    base = tmp_path_factory.mktemp("ocsp")
    port = free_port()
    manifest = init_pki(base / "pki", agencies=1, now=NOW, ocsp_url=f"http://127.0.0.1:{port}/ocsp")
    log = base / "responder.log"
    process = start_responder(base / "pki", port, log)
    yield Served(base / "pki", port, log, manifest)
    stop(process)


@pytest.fixture
def closed_url() -> str:
    """A base URL on which nothing listens: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


def _request(cert, issuer, algorithm=hashes.SHA256(), nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


# --- RevocationChecker against the live responder -------------------------------------------------------

def test_a_good_person_certificate_is_good_by_ocsp(served):
    answer = RevocationChecker(ocsp_fetcher=HttpOcspFetcher()).require_good(served.person("preparer"),
                                                                          served.intermediate, NOW)
    assert (answer.status, answer.source, answer.soft_failed) == (RevocationStatus.GOOD, "ocsp", False)
    # The responder dates its answer by its own clock: thisUpdate a minute back, nextUpdate an hour ahead.
    assert answer.next_update - answer.this_update == datetime.timedelta(minutes=61)


def test_a_revocation_is_answered_at_once_without_restarting_the_responder(served):
    cert = served.person("accountant")
    revoke(served.dir, cert, now=NOW, reason=x509.ReasonFlags.key_compromise)
    checker = RevocationChecker(ocsp_fetcher=HttpOcspFetcher())
    with pytest.raises(Refusal) as refused:
        checker.require_good(cert, served.intermediate, NOW)
    assert refused.value.code == "certificate-revoked"
    assert "per OCSP" in refused.value.message
    answer = checker.status(cert, served.intermediate, NOW)
    assert (answer.revocation_time, answer.reason) == (NOW, "key_compromise")


def test_a_cached_good_answer_outlives_a_revocation_until_forget(served):
    cert = served.person("head")
    checker = RevocationChecker(ocsp_fetcher=HttpOcspFetcher())
    assert checker.status(cert, served.intermediate, NOW).status is RevocationStatus.GOOD
    revoke(served.dir, cert, now=NOW)
    assert checker.status(cert, served.intermediate, NOW).status is RevocationStatus.GOOD  # cached
    checker.forget()
    with pytest.raises(Refusal) as refused:
        checker.require_good(cert, served.intermediate, NOW)
    assert refused.value.code == "certificate-revoked"


def test_a_serial_the_ca_never_issued_is_unknown_and_refused(served):
    assert format(UNKNOWN_SERIAL, "X") not in load_state(served.dir)["issued"]
    cert = served.mint(ocsp_url=f"{served.url}/ocsp", serial=UNKNOWN_SERIAL)
    checker = RevocationChecker(ocsp_fetcher=HttpOcspFetcher())
    assert checker.status(cert, served.intermediate, NOW).status is RevocationStatus.UNKNOWN
    with pytest.raises(Refusal) as refused:
        checker.require_good(cert, served.intermediate, NOW)
    assert refused.value.code == "certificate-status-unknown"


def test_a_stopped_responder_without_a_crl_leaves_the_certificate_refused(served, tmp_path):
    """A second responder on its own port answers, is stopped, and then cannot be had."""
    port = free_port()
    cert = served.mint(ocsp_url=f"http://127.0.0.1:{port}/ocsp")
    process = start_responder(served.dir, port, tmp_path / "second.log")
    try:
        with pytest.raises(Refusal) as while_up:
            RevocationChecker(ocsp_fetcher=HttpOcspFetcher()).require_good(cert, served.intermediate, NOW)
        assert while_up.value.code == "certificate-status-unknown"  # it answered
    finally:
        stop(process)
    with pytest.raises(Refusal) as while_down:
        RevocationChecker(ocsp_fetcher=HttpOcspFetcher(timeout=2)).require_good(cert, served.intermediate, NOW)
    assert while_down.value.code == "revocation-unavailable"
    assert f"127.0.0.1:{port}/ocsp" in while_down.value.message


def test_with_the_responder_down_the_crl_file_answers(served, closed_url):
    checker = RevocationChecker(ocsp_fetcher=HttpOcspFetcher(timeout=2), crl_fetcher=FileCrlFetcher(served.dir))
    good = served.mint(ocsp_url=f"{closed_url}/ocsp")
    answer = checker.require_good(good, served.intermediate, NOW)
    assert (answer.status, answer.source) == (RevocationStatus.GOOD, "crl")

    revoked = served.mint(ocsp_url=f"{closed_url}/ocsp")
    revoke(served.dir, revoked, now=NOW, reason=x509.ReasonFlags.cessation_of_operation)
    checker.forget()  # the CRL read above is cached until its nextUpdate
    with pytest.raises(Refusal) as refused:
        checker.require_good(revoked, served.intermediate, NOW)
    assert refused.value.code == "certificate-revoked"
    assert "cessation_of_operation" in refused.value.message and "per CRL" in refused.value.message


def test_soft_fail_with_every_source_down_passes_flagged(served, closed_url):
    cert = served.mint(ocsp_url=f"{closed_url}/ocsp", crl_url=f"{closed_url}/crl/intermediate.crl")
    checker = RevocationChecker(ocsp_fetcher=HttpOcspFetcher(timeout=2), crl_fetcher=HttpCrlFetcher(timeout=2),
                                soft_fail=True)
    assert checker.soft_failures == 0
    answer = checker.require_good(cert, served.intermediate, NOW)
    assert (answer.status, answer.source, answer.soft_failed) == (RevocationStatus.UNKNOWN, "none", True)
    assert "OCSP" in answer.detail and "CRL" in answer.detail
    checker.require_good(cert, served.intermediate, NOW)  # not cached: asked again, counted again
    assert checker.soft_failures == 2


def test_an_answer_is_served_from_the_cache_until_its_next_update(served):
    calls = []
    fetcher = HttpOcspFetcher()

    def counting(url, request_der):
        calls.append(url)
        return fetcher(url, request_der)

    checker = RevocationChecker(ocsp_fetcher=counting, max_cache_age=datetime.timedelta(hours=2))
    cert = served.person("releaser")
    first = checker.status(cert, served.intermediate, NOW)
    assert checker.status(cert, served.intermediate, NOW) == first
    assert checker.status(cert, served.intermediate, NOW + datetime.timedelta(minutes=30)) == first
    assert len(calls) == 1
    # Past the answer's own nextUpdate (the responder dates it by its clock when it answers, not by NOW).
    later = checker.status(cert, served.intermediate, first.next_update + datetime.timedelta(minutes=1))
    assert len(calls) == 2
    assert later.status is RevocationStatus.GOOD and later.next_update >= first.next_update


def test_a_cached_answer_is_asked_again_after_the_maximum_cache_age(served):
    """nextUpdate may lie days ahead; a revocation the CA has published must still arrive within minutes."""
    calls = []
    fetcher = HttpOcspFetcher()

    def counting(url, request_der):
        calls.append(url)
        return fetcher(url, request_der)

    checker = RevocationChecker(ocsp_fetcher=counting)  # default maximum age: 5 minutes
    cert = served.person("head")
    checker.status(cert, served.intermediate, NOW)
    checker.status(cert, served.intermediate, NOW + datetime.timedelta(minutes=4))
    assert len(calls) == 1
    checker.status(cert, served.intermediate, NOW + datetime.timedelta(minutes=6))
    assert len(calls) == 2


# --- the responder's protocol ---------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256(), hashes.SHA512()], ids=lambda a: a.name)
def test_a_post_is_answered_for_any_cert_id_hash_and_echoes_the_nonce(served, algorithm):
    cert, nonce = served.person("reviewer"), os.urandom(16)
    der = HttpOcspFetcher()(f"{served.url}/ocsp", _request(cert, served.intermediate, algorithm, nonce))
    response = ocsp.load_der_ocsp_response(der)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert isinstance(response.hash_algorithm, type(algorithm))
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert evaluate_ocsp(der, cert, served.intermediate, NOW).status is RevocationStatus.GOOD


@pytest.mark.parametrize("encode", [
    lambda der: urllib.parse.quote(base64.b64encode(der).decode(), safe=""),  # RFC 6960 A.1
    lambda der: base64.urlsafe_b64encode(der).decode().rstrip("="),
], ids=["url-encoded-base64", "base64url"])
def test_the_get_form_is_answered(served, encode):
    cert = served.person("reviewer")
    with urllib.request.urlopen(f"{served.url}/ocsp/{encode(_request(cert, served.intermediate))}",
                                timeout=5) as reply:
        assert reply.headers["Content-Type"] == "application/ocsp-response"
        der = reply.read()
    assert evaluate_ocsp(der, cert, served.intermediate, NOW).status is RevocationStatus.GOOD


def _status_of(url: str, **request) -> ocsp.OCSPResponseStatus:
    with urllib.request.urlopen(urllib.request.Request(url, **request), timeout=5) as reply:
        assert reply.status == 200 and reply.headers["Content-Type"] == "application/ocsp-response"
        return ocsp.load_der_ocsp_response(reply.read()).response_status


def test_garbage_gets_malformed_request_and_no_traceback(served):
    post = _status_of(f"{served.url}/ocsp", data=b"\x30\x03garbage", method="POST",
                      headers={"Content-Type": "application/ocsp-request"})
    not_base64 = _status_of(f"{served.url}/ocsp/%%%not*base64")
    not_ocsp = _status_of(f"{served.url}/ocsp/{base64.b64encode(b'hello').decode()}")
    assert post == not_base64 == not_ocsp == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_a_question_about_another_issuers_certificate_is_unauthorized(served):
    root = load_cert(served.dir / "root/cert.pem")
    about_intermediate = _request(served.intermediate, root)  # the root's business, not this responder's
    der = HttpOcspFetcher()(f"{served.url}/ocsp", about_intermediate)
    assert ocsp.load_der_ocsp_response(der).response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_each_answer_is_logged_with_its_serial_and_status(served):
    cert = served.person("deputy")
    RevocationChecker(ocsp_fetcher=HttpOcspFetcher()).require_good(cert, served.intermediate, NOW)
    expected = f"OCSP POST serial={cert.serial_number:X} status=good"
    deadline = time.monotonic() + 30  # the log line is written by another process right after answering
    while expected not in served.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert expected in served.log.read_text()
    assert "Traceback" not in served.log.read_text()


# --- CRLs over HTTP and from files ----------------------------------------------------------------------

def test_the_crl_is_served_over_http_and_fetched_from_the_distribution_point(served):
    with urllib.request.urlopen(f"{served.url}/crl/intermediate.crl", timeout=5) as reply:
        assert reply.headers["Content-Type"] == "application/pkix-crl"
        served_bytes = reply.read()
    fetched = HttpCrlFetcher()(served.intermediate, served.person("preparer"))
    assert served_bytes == fetched == (served.dir / "crl/intermediate.crl").read_bytes()
    check_crl_authentic(load_crl(fetched), served.intermediate, NOW)


@pytest.mark.parametrize("path", ["/crl/../ca-state.json", "/crl/%2e%2e/ca-state.json", "/crl/ocsp/key.pem",
                                  "/crl/", "/nothing"])
def test_nothing_but_the_two_crls_is_served(served, path):
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(served.url + path, timeout=5)
    assert error.value.code == 404
    error.value.close()


def test_http_crl_fetcher_needs_a_distribution_point(served):
    with pytest.raises(RevocationFetchError, match="no http"):
        HttpCrlFetcher()(served.intermediate, served.mint(ocsp_url=None))


def test_file_crl_fetcher_reads_by_layout_or_by_mapping(served, tmp_path):
    root = load_cert(served.dir / "root/cert.pem")
    intermediate_crl = (served.dir / "crl/intermediate.crl").read_bytes()
    leaf = served.person("preparer")
    for fetcher in (FileCrlFetcher(served.dir), FileCrlFetcher(served.dir / "crl")):
        assert fetcher(served.intermediate, leaf) == intermediate_crl
        assert fetcher(root, served.intermediate) == (served.dir / "crl/root.crl").read_bytes()
    mapped = FileCrlFetcher({served.intermediate.subject: served.dir / "crl/intermediate.crl"})
    assert mapped(served.intermediate, leaf) == intermediate_crl
    with pytest.raises(RevocationFetchError, match="no CRL file is configured"):
        mapped(root, served.intermediate)
    with pytest.raises(RevocationFetchError, match="cannot read CRL file"):
        FileCrlFetcher(tmp_path)(served.intermediate, leaf)


# --- HttpOcspFetcher's refusals -------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/ocsp", "gopher://x/", "http:///ocsp"])
def test_the_ocsp_fetcher_refuses_urls_that_are_not_http(url):
    with pytest.raises(RevocationFetchError, match="only http and https"):
        HttpOcspFetcher()(url, b"request")


def test_the_ocsp_fetcher_turns_http_errors_and_oversize_answers_into_fetch_errors(served):
    request = _request(served.person("preparer"), served.intermediate)
    with pytest.raises(RevocationFetchError, match="HTTP 404"):
        HttpOcspFetcher()(f"{served.url}/not-ocsp", request)
    with pytest.raises(RevocationFetchError, match="more than 100 bytes"):
        HttpOcspFetcher(max_bytes=100)(f"{served.url}/ocsp", request)


def test_the_ocsp_fetcher_gives_up_after_its_timeout():
    """A peer that accepts the connection and never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        with pytest.raises(RevocationFetchError, match="0.3"):
            HttpOcspFetcher(timeout=0.3)(f"http://127.0.0.1:{silent.getsockname()[1]}/ocsp", b"request")
    assert time.monotonic() - started < 5
