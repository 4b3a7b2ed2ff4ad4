"""The HTTPS API (klein on Twisted): routes, body limits, and problem+json for every refusal.

Handlers only translate HTTP to calls on an :class:`~adapters.intake_service.IntakeService` and back.
The work itself (XML, signatures, certificates, the store) blocks, so it runs in Twisted's thread pool,
never on the reactor thread. Any exception other than a refusal is our bug: logged with its traceback,
answered 500 with a problem document that leaks nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from klein import Klein
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.web import server
from werkzeug.exceptions import HTTPException

from gateway.errors import Refusal
from gateway.problems import problem_document, problem_for_internal_error

from .tls import peer_certificate

PROBLEM_JSON = "application/problem+json"
DEFAULT_MAX_BODY = 8 * 1024 * 1024

log = Logger()


@dataclass(frozen=True)
class Answer:
    """What a handler sends back: status, content type, body bytes and extra headers."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, document: dict, content_type: str = "application/json") -> Answer:
        return cls(status, content_type, json.dumps(document, ensure_ascii=False).encode("utf-8"))

    @classmethod
    def problem(cls, refusal: Refusal, instance: str | None = None) -> Answer:
        document = problem_document(refusal, instance=instance)
        return cls(document["status"], PROBLEM_JSON, json.dumps(document, ensure_ascii=False).encode("utf-8"))


class BodyLimitedRequest(server.Request):
    """A request that stops buffering its body past ``max_body`` bytes (declared or streamed)."""

    max_body = DEFAULT_MAX_BODY

    def gotLength(self, length):
        self.body_too_large = length is not None and length > self.max_body
        self._body_seen = 0
        super().gotLength(None if self.body_too_large else length)

    def handleContentChunk(self, data):
        if self.body_too_large:
            return
        self._body_seen += len(data)
        if self._body_seen > self.max_body:
            self.body_too_large = True
            self.content.seek(0)
            self.content.truncate()
            return
        super().handleContentChunk(data)


def make_site(api: GatewayHttpApi, *, max_body: int = DEFAULT_MAX_BODY, idle_timeout: float = 30.0) -> server.Site:
    """A Site that closes idle or slow connections after ``idle_timeout`` seconds and caps bodies."""
    request_factory = type("LimitedRequest", (BodyLimitedRequest,), {"max_body": max_body})
    site = server.Site(api.app.resource(), timeout=idle_timeout)
    site.requestFactory = request_factory
    site.displayTracebacks = False
    return site


class GatewayHttpApi:
    app = Klein()

    def __init__(self, service) -> None:
        self.service = service

    def _send(self, request, answer: Answer) -> bytes:
        request.setResponseCode(answer.status)
        request.setHeader(b"Content-Type", answer.content_type.encode("ascii"))
        for name, value in answer.headers.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
        return answer.body

    def _run(self, request, work, *args):
        """Run blocking ``work(*args)`` in the thread pool and turn its Answer (or failure) into a response."""
        instance = request.uri.decode("ascii", "replace")

        def failed(failure):
            if failure.check(Refusal):
                return self._send(request, Answer.problem(failure.value, instance))
            log.failure("internal error answering {uri}", failure, uri=instance)
            return self._send(request, Answer.json(500, problem_for_internal_error(instance), PROBLEM_JSON))

        d = deferToThread(work, *args)
        d.addCallbacks(lambda answer: self._send(request, answer), failed)
        return d

    @app.route("/v1/vouchers", methods=["POST"])
    def submit_voucher(self, request):
        instance = request.uri.decode("ascii", "replace")
        if getattr(request, "body_too_large", False):
            return self._send(request, Answer.problem(
                Refusal("too-large", f"the body is larger than {request.max_body} bytes"), instance))
        body = request.content.read()
        return self._run(request, self.service.submit_voucher, body, peer_certificate(request.transport))

    @app.route("/v1/vouchers/<string:voucher_id>", methods=["GET"])
    def voucher_status(self, request, voucher_id):
        return self._run(request, self.service.voucher_status, voucher_id, peer_certificate(request.transport))

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request):
        return self._send(request, Answer.json(200, {"status": "ok"}))

    @app.route("/readyz", methods=["GET"])
    def readyz(self, request):
        return self._run(request, self.service.readiness)

    @app.handle_errors(HTTPException)
    def http_error(self, request, failure):
        """Unknown routes and wrong methods: the routing library's 404/405, as problem documents."""
        error = failure.value
        instance = request.uri.decode("ascii", "replace")
        code = {404: "not-found", 405: "method-not-allowed"}.get(error.code, "bad-request")
        document = {"type": "about:blank", "title": error.name, "status": error.code, "code": code,
                    "detail": error.description, "instance": instance}
        return self._send(request, Answer.json(error.code, document, PROBLEM_JSON))

    @app.handle_errors(Exception)
    def unexpected(self, request, failure):
        instance = request.uri.decode("ascii", "replace")
        log.failure("unhandled error answering {uri}", failure, uri=instance)
        return self._send(request, Answer.json(500, problem_for_internal_error(instance), PROBLEM_JSON))
