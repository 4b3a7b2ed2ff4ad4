"""The signing agent's HTTP service (klein on Twisted), on 127.0.0.1 for the pages of the configured gateways.

Every request is judged before anything else runs:

- ``Host`` must be the loopback address the agent listens on (``127.0.0.1:PORT`` or ``localhost:PORT``): a
  page on another site that rebinds its DNS name to 127.0.0.1 does not reach the card (``signer-host-refused``);
- ``Origin`` must be one of the configured gateway origins, exactly (``signer-origin-refused``): a request
  without one (not from a page) or from any other page is refused, and no CORS header names it;
- a CORS preflight (``OPTIONS``) from an allowed origin is answered for ``GET``/``POST`` with
  ``Content-Type``, and its Private Network Access question (``Access-Control-Request-Private-Network``) with
  ``Access-Control-Allow-Private-Network: true`` — for those origins only.

Routes: ``GET /v1/certificates`` lists the certificates on the configured token (no PIN: certificates are
public objects); ``POST /v1/sign`` takes one document (adapters/signer/requests.py), logs and returns what
it is about to sign, reads the PIN from the agent's own source (a file, the environment or its terminal;
never from the page), signs with the card's key and answers the signed document. Refusals are problem
documents with a stable code; nothing is signed on any of them. One card, one signature at a time.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from klein import Klein
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from adapters.clock import utc_now
from adapters.signer.requests import MAX_DOCUMENT_BYTES, signing_request, summary_line
from adapters.tokens.keys import find_token, open_signer, signs, token_certificates
from adapters.tokens.uri import TokenRef
from gateway.errors import Refusal
from gateway.problems import PROBLEM_MEDIA_TYPE, problem_document
from gateway.xmlsec.signing import sign_document

log = Logger(namespace="vgw.signer")

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Content-Type"
XML_TYPES = ("application/xml", "text/xml")


@dataclass(frozen=True)
class AgentSettings:
    """What one agent serves: the token, where its PIN comes from, the gateways' origins, its own address."""

    token: TokenRef
    origins: frozenset[str]
    port: int
    read_pin: Callable[[], str]
    """Reads the PIN when a signature is asked for (a file, the environment or a prompt): never the page's."""


def _certificate_entry(cert: x509.Certificate) -> dict:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        usages = [name for name, on in (("digitalSignature", usage.digital_signature),
                                        ("nonRepudiation", usage.content_commitment),
                                        ("keyEncipherment", usage.key_encipherment)) if on]
    except x509.ExtensionNotFound:
        usages = []
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return {"subject": cert.subject.rfc4514_string(), "name": names[0].value if names else None,
            "serial": format(cert.serial_number, "X"), "issuer": cert.issuer.rfc4514_string(),
            "not_before": cert.not_valid_before_utc.isoformat(), "not_after": cert.not_valid_after_utc.isoformat(),
            "key_usage": usages, "signs": signs(cert)}


class SigningAgent:
    """The klein app of one agent (see the module docstring); ``resource()`` is what the site serves."""

    app = Klein()

    def __init__(self, settings: AgentSettings, *, clock: Callable[[], datetime.datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self._card = threading.Lock()
        self.signed = 0
        self.hosts = frozenset({f"127.0.0.1:{settings.port}", f"localhost:{settings.port}"})

    def resource(self):
        return self.app.resource()

    # --- the judgement every request gets ----------------------------------------------------------------

    def _refuse(self, request, status: int, code: str, message: str) -> bytes:
        request.setResponseCode(status)
        request.setHeader("Content-Type", PROBLEM_MEDIA_TYPE)
        document = problem_document(Refusal(code, message))
        document["status"] = status
        log.warn("signer: refused {code}: {why}", code=code, why=message)
        return json.dumps(document, ensure_ascii=False).encode("utf-8")

    def _admitted(self, request) -> bytes | None:
        """None when the request may go on (CORS headers set for its origin), else the refusal's body."""
        host = (request.getHeader("host") or "").lower()
        if host not in self.hosts:
            return self._refuse(request, 421, "signer-host-refused", f"the agent answers at {sorted(self.hosts)[0]}, "
                                f"not as {host[:100]!r}")
        origin = request.getHeader("origin")
        if origin is None or origin not in self.settings.origins:
            return self._refuse(request, 403, "signer-origin-refused", f"{(origin or 'a request without an Origin')[:100]}"
                                " is not a gateway this agent signs for")
        request.setHeader("Access-Control-Allow-Origin", origin)
        request.setHeader("Vary", "Origin")
        request.setHeader("Cache-Control", "no-store")
        return None

    def _json(self, request, status: int, document: dict) -> bytes:
        request.setResponseCode(status)
        request.setHeader("Content-Type", "application/json")
        return json.dumps(document, ensure_ascii=False).encode("utf-8")

    # --- routes ------------------------------------------------------------------------------------------

    @app.route("/", branch=True, methods=["OPTIONS"])
    def preflight(self, request):
        refused = self._admitted(request)
        if refused is not None:
            return refused
        request.setResponseCode(204)
        request.setHeader("Access-Control-Allow-Methods", ALLOWED_METHODS)
        request.setHeader("Access-Control-Allow-Headers", ALLOWED_HEADERS)
        request.setHeader("Access-Control-Max-Age", "600")
        if (request.getHeader("access-control-request-private-network") or "").lower() == "true":
            request.setHeader("Access-Control-Allow-Private-Network", "true")
        return b""

    @app.route("/", branch=True, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def elsewhere(self, request):
        refused = self._admitted(request)
        if refused is not None:
            return refused
        return self._refuse(request, 404, "signer-not-found", "the agent answers GET /v1/certificates and POST "
                            "/v1/sign only")

    @app.route("/v1/certificates", methods=["GET"])
    def certificates(self, request):
        refused = self._admitted(request)
        if refused is not None:
            return refused
        d = deferToThread(self._certificates)
        d.addCallbacks(lambda listed: self._json(request, 200, {"certificates": listed}),
                       lambda failure: self._failed(request, failure))
        return d

    def _certificates(self) -> list[dict]:
        with self._card:
            token = find_token(self.settings.token)
            with token.open() as session:  # no login: certificates are public objects
                return [_certificate_entry(cert) for _, cert in token_certificates(session)]

    @app.route("/v1/sign", methods=["POST"])
    def sign(self, request):
        refused = self._admitted(request)
        if refused is not None:
            return refused
        content_type = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
        if content_type not in XML_TYPES:
            return self._refuse(request, 415, "signer-media-type", "post the document as application/xml")
        body = request.content.read(MAX_DOCUMENT_BYTES + 1)
        if len(body) > MAX_DOCUMENT_BYTES:
            return self._refuse(request, 413, "signer-body-too-large",
                                f"the agent signs documents of at most {MAX_DOCUMENT_BYTES:,} bytes")
        d = deferToThread(self._sign, body, request.getHeader("origin"))
        d.addCallbacks(lambda answer: self._json(request, 200, answer), lambda failure: self._failed(request, failure))
        return d

    def _sign(self, body: bytes, origin: str) -> dict:
        wanted = signing_request(body, now=self.clock(), origin=origin)
        line = summary_line(wanted.summary)
        log.info("signer: {origin} asks to sign {what}", origin=origin, what=line)
        with self._card:
            with open_signer(self.settings.token, self.settings.read_pin()) as signer:
                signed = sign_document(wanted.data, signer.key, signer.cert, wanted.signing_time)
                cert = signer.cert
        self.signed += 1
        log.info("signer: signed {what} with certificate {serial}", what=line, serial=format(cert.serial_number, "X"))
        return {"summary": wanted.summary, "said": line, "certificate": _certificate_entry(cert),
                "signed": signed.decode("utf-8")}

    def _failed(self, request, failure) -> bytes:
        if failure.check(Refusal):
            refusal = failure.value
            return self._refuse(request, refusal.http_status, refusal.code, refusal.message)
        log.failure("signer: internal error", failure)
        return self._refuse(request, 500, "internal-error", "the agent failed; nothing was signed")
