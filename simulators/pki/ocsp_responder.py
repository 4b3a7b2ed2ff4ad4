"""The test CA's OCSP responder (RFC 6960) and CRL server, on Twisted Web.

In production the gateway asks MOICA's responder over HTTP; tests and demos need a real one that speaks
the same protocol and answers from the folder ``simulators.pki.layout`` writes, so that ``revoke()`` (or
``vgw pki revoke``) shows up on the next request without a restart. The protocol work lives in
:class:`Responder`, which knows nothing of Twisted; the resources only move bytes and log one line each.

Run it with ``python -m simulators.pki.ocsp_responder DIR --port 28960`` or ``vgw pki ocsp DIR --port 28960``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from pyasn1.codec.der import decoder as der_decoder
from pyasn1_modules import rfc5280
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.web import resource, server

from simulators.pki.layout import STATE_FILE, load_cert, load_key

OCSP_RESPONSE_TYPE = b"application/ocsp-response"
CRL_TYPE = b"application/pkix-crl"
MAX_REQUEST_BYTES = 64 * 1024  # a real request is ~100 bytes; the cap keeps a bad client from filling memory
CRL_NAMES = ("intermediate.crl", "root.crl")  # the only files served from DIR/crl/, so no path can escape it
# The CertID hash algorithms a client may use; the issuer's hashes are computed for each.
CERT_ID_HASHES = (hashes.SHA1(), hashes.SHA224(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512())

log = Logger(namespace="ocsp-responder")


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CertID naming ``issuer``, per RFC 6960 section 4.1.1.

    The key hash covers only the subjectPublicKey BIT STRING's bytes, not the whole SubjectPublicKeyInfo,
    so the SPKI is taken apart here rather than hashed whole.
    """
    spki_der = issuer.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    spki, _ = der_decoder.decode(spki_der, asn1Spec=rfc5280.SubjectPublicKeyInfo())
    return (_digest(algorithm, issuer.subject.public_bytes()),
            _digest(algorithm, spki["subjectPublicKey"].asOctets()))


class CaState:
    """``ca-state.json``, re-read whenever the file changes (layout.py replaces it atomically)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._issued: dict = {}
        self._revoked: dict = {}

    def _refresh(self) -> None:
        st = os.stat(self._path)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            self._issued, self._revoked, self._stamp = data.get("issued", {}), data.get("revoked", {}), stamp

    def lookup(self, serial: int) -> tuple[ocsp.OCSPCertStatus, datetime.datetime | None, x509.ReasonFlags | None]:
        """(status, revocation time, reason) for ``serial``, keyed in the file as upper-case hex."""
        self._refresh()
        key = format(serial, "X")
        if key in self._revoked:
            info = self._revoked[key]
            when = datetime.datetime.fromisoformat(info["time"])
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            reason = x509.ReasonFlags(info["reason"]) if info.get("reason") else None
            return ocsp.OCSPCertStatus.REVOKED, when, reason
        if key in self._issued:
            return ocsp.OCSPCertStatus.GOOD, None, None
        return ocsp.OCSPCertStatus.UNKNOWN, None, None


@dataclass(frozen=True)
class Answer:
    """A DER OCSP response plus what the log line says about it."""

    der: bytes
    serial: str  # upper-case hex, or "-" when the request could not be read
    status: str  # good / revoked / unknown, or the unsuccessful responseStatus in lower case


def _unsuccessful(status: ocsp.OCSPResponseStatus, serial: str = "-") -> Answer:
    der = ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)
    return Answer(der, serial, status.name.lower())


class Responder:
    """Answers DER OCSP requests about the intermediate CA's certificates, signed by the delegated responder."""

    def __init__(self, pki_dir: Path, *, next_update: datetime.timedelta = datetime.timedelta(hours=1)) -> None:
        base = Path(pki_dir)
        self.issuer = load_cert(base / "intermediate/cert.pem")
        self.responder_cert = load_cert(base / "ocsp/cert.pem")
        self.responder_key = load_key(base / "ocsp/key.pem")
        self.next_update = next_update
        self.state = CaState(base / STATE_FILE)
        self._issuer_hashes = {alg.name: issuer_hashes(self.issuer, alg) for alg in CERT_ID_HASHES}

    def answer(self, request_der: bytes, now: datetime.datetime) -> Answer:
        try:
            request = ocsp.load_der_ocsp_request(request_der)
            serial_number = request.serial_number
            nonce = self._nonce(request)
        except (ValueError, NotImplementedError):  # not DER, not an OCSPRequest, or several CertIDs at once
            return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        serial = format(serial_number, "X")
        try:
            algorithm = request.hash_algorithm
        except UnsupportedAlgorithm:
            return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED, serial)
        if self._issuer_hashes.get(algorithm.name) != (request.issuer_name_hash, request.issuer_key_hash):
            return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED, serial)
        status, revoked_at, reason = self.state.lookup(serial_number)
        now = now.replace(microsecond=0)
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            request.issuer_name_hash, request.issuer_key_hash, serial_number, algorithm, status,
            this_update=now - datetime.timedelta(minutes=1), next_update=now + self.next_update,
            revocation_time=revoked_at, revocation_reason=reason)
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.responder_cert)
        builder = builder.certificates([self.responder_cert])
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(self.responder_key, hashes.SHA256())
        return Answer(response.public_bytes(serialization.Encoding.DER), serial, status.name.lower())

    @staticmethod
    def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
        try:
            return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            return None


def decode_get_path(path: bytes) -> bytes:
    """The DER request from ``/ocsp/{url-encoded base64}`` (RFC 6960 appendix A.1).

    The raw path is used, not Twisted's split segments, because plain base64 may carry unescaped ``/``.
    Both the standard alphabet (what the RFC says) and the URL-safe one (what some clients send) are read.
    Raises ValueError when it is not base64.
    """
    text = unquote_to_bytes(path.split(b"/ocsp/", 1)[1]).strip()
    text = text.replace(b"-", b"+").replace(b"_", b"/").rstrip(b"=")
    try:
        return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None


class OcspResource(resource.Resource):
    """``POST /ocsp`` with a DER body, or ``GET /ocsp/{base64}``; always answers an OCSP response."""

    isLeaf = True

    def __init__(self, responder: Responder) -> None:
        super().__init__()
        self._responder = responder

    def render_POST(self, request: server.Request) -> bytes:
        body = request.content.read(MAX_REQUEST_BYTES + 1)
        if len(body) > MAX_REQUEST_BYTES:
            return self._send(request, _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
        return self._send(request, self._answer(body))

    def render_GET(self, request: server.Request) -> bytes:
        if b"/ocsp/" not in request.path or len(request.path) > 2 * MAX_REQUEST_BYTES:
            return self._send(request, _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
        try:
            der = decode_get_path(request.path)
        except ValueError:
            return self._send(request, _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
        return self._send(request, self._answer(der))

    def _answer(self, der: bytes) -> Answer:
        try:
            return self._responder.answer(der, datetime.datetime.now(datetime.timezone.utc))
        except Exception:  # our own bug: log it here, answer internalError, never a traceback to the client
            log.failure("OCSP responder failed")
            return _unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR)

    @staticmethod
    def _send(request: server.Request, answer: Answer) -> bytes:
        log.info("OCSP {method} serial={serial} status={status}", method=request.method.decode("ascii", "replace"),
                 serial=answer.serial, status=answer.status)
        request.setHeader(b"Content-Type", OCSP_RESPONSE_TYPE)
        return answer.der


class CrlResource(resource.Resource):
    """``GET /crl/intermediate.crl`` and ``/crl/root.crl``, read per request so a reissued CRL is served."""

    isLeaf = True

    def __init__(self, crl_dir: Path) -> None:
        super().__init__()
        self._dir = crl_dir

    def render_GET(self, request: server.Request) -> bytes:
        wanted = b"/".join(request.postpath).decode("utf-8", "replace")
        try:
            data = (self._dir / wanted).read_bytes() if wanted in CRL_NAMES else None
        except OSError:
            data = None
        if data is None:
            log.info("CRL GET {name} 404", name=wanted)
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"no such CRL\n"
        log.info("CRL GET {name} 200 ({size} bytes)", name=wanted, size=len(data))
        request.setHeader(b"Content-Type", CRL_TYPE)
        return data


class ResponderSite(server.Site):
    """A Site without the access log: each resource logs its own line, with the serial and status."""

    displayTracebacks = False
    noisy = False

    def log(self, request) -> None:
        pass


def make_site(pki_dir: Path, *, next_update: datetime.timedelta = datetime.timedelta(hours=1)) -> server.Site:
    root = resource.Resource()
    root.putChild(b"ocsp", OcspResource(Responder(pki_dir, next_update=next_update)))
    root.putChild(b"crl", CrlResource(Path(pki_dir) / "crl"))
    return ResponderSite(root)


def run(pki_dir: Path, port: int, host: str = "127.0.0.1", *,
        next_update: datetime.timedelta = datetime.timedelta(hours=1)) -> None:
    """Serve ``pki_dir`` on ``host:port`` until the process is stopped, logging to stdout."""
    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    site = make_site(pki_dir, next_update=next_update)
    listening = reactor.listenTCP(port, site, interface=host)
    log.info("OCSP responder for {dir} on http://{host}:{port}/ocsp (CRLs under /crl/)", dir=str(pki_dir),
             host=host, port=listening.getHost().port)
    reactor.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.pki.ocsp_responder",
                                     description="Run the test PKI's OCSP responder and CRL server.")
    parser.add_argument("dir", metavar="DIR", type=Path, help="a folder made by `vgw pki init`")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--next-update", type=int, default=3600, metavar="SECONDS",
                        help="how long each answer is valid (default 3600)")
    args = parser.parse_args(argv)
    if not (args.dir / STATE_FILE).exists():
        parser.error(f"{args.dir} is not a PKI folder made by `vgw pki init`")
    run(args.dir, args.port, args.host, next_update=datetime.timedelta(seconds=args.next_update))
    return 0


if __name__ == "__main__":
    sys.exit(main())
