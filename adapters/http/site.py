"""The HTTPS API (klein on Twisted): routes, body limits, and problem+json for every refusal.

Handlers only translate HTTP to calls on an :class:`~adapters.services.intake.IntakeService` and back.
The work itself (XML, signatures, certificates, the store) blocks, so it runs in Twisted's thread pool,
never on the reactor thread. Any exception other than a refusal is our bug: logged with its traceback,
answered 500 with a problem document that leaks nothing.

Around every request (:class:`_ObservedResource`): the in-flight gauge, the latency histogram and the
counters of ``adapters.http.metrics``, and ONE structured log line (``http.request``) when the answer is
written or the connection is lost. The /v1 routes are rate-limited per calling agency on the reactor
thread, before any work reaches the thread pool.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from klein import Klein
from klein.interfaces import IKleinRequest
from prometheus_client.twisted import MetricsResource
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.web import resource, server
from werkzeug.exceptions import HTTPException

from adapters.http.client_identity import agency_of_client
from adapters.http.metrics import METRICS_CONTENT_TYPE, HttpMetrics
from adapters.http.openapi import openapi_document
from adapters.http.query_params import parse_limit, parse_list_query, parse_statement_query
from adapters.http.rate_limit import AgencyRateLimiter
from adapters.http.settings import ApiSettings
from adapters.http.tls import peer_certificate
from gateway.errors import Refusal
from gateway.problems import PROBLEM_MEDIA_TYPE, problem_document, problem_for_internal_error

DEFAULT_MAX_BODY = 8 * 1024 * 1024

log = Logger(namespace="vgw.http")

# Refusals of a request's query string: the client's request is malformed, not the document it names.
# (Kept here until gateway.errors maps them: there they answer 422.)
@dataclass(frozen=True)
class Answer:
    """What a handler sends back: status, content type, body bytes and extra headers; ``voucher_id`` and
    ``outcome`` (e.g. ``accepted``, ``duplicate``) are for the request's log line only, never sent."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    voucher_id: str | None = None
    outcome: str | None = None

    @classmethod
    def json(cls, status: int, document: dict, content_type: str = "application/json", *,
             outcome: str | None = None) -> Answer:
        return cls(status, content_type, json.dumps(document, ensure_ascii=False).encode("utf-8"), outcome=outcome)

    @classmethod
    def problem(cls, refusal: Refusal, instance: str | None = None) -> Answer:
        document = problem_document(refusal, instance=instance)
        return cls(document["status"], PROBLEM_MEDIA_TYPE, json.dumps(document, ensure_ascii=False).encode("utf-8"),
                   outcome=refusal.code)


class BodyLimitedRequest(server.Request):
    """A request that stops buffering its body past ``max_body`` bytes (declared or streamed)."""

    max_body = DEFAULT_MAX_BODY

    def __init__(self, *args, **kwargs) -> None:
        # The API takes XML, never HTML form posts: without this, twisted.web parses a multipart/form-data
        # body itself before any route runs and answers a failed parse with a bare 400 and no problem document.
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)

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
    site = _Site(_ObservedResource(api), timeout=idle_timeout)
    site.requestFactory = request_factory
    site.displayTracebacks = False
    return site


class _Site(server.Site):
    def log(self, request) -> None:
        """No combined-format access line: :class:`_ObservedResource` writes the one structured line."""


def make_metrics_site(api: GatewayHttpApi) -> server.Site:
    """A plain-HTTP Site serving only ``GET /metrics`` from ``api``'s registry, for a listener bound to
    127.0.0.1 (``vgw serve --metrics-listen``) so a local Prometheus needs no client certificate."""
    root = resource.Resource()
    root.putChild(b"metrics", MetricsResource(registry=api.metrics.registry))
    site = server.Site(root, timeout=30.0)
    site.displayTracebacks = False
    return site


class _ObservedResource(resource.Resource):
    """The klein app's resource, with metrics and one log line per request around it."""

    isLeaf = True

    def __init__(self, api: GatewayHttpApi) -> None:
        super().__init__()
        self.api = api
        self.inner = api.app.resource()
        # The web console's own klein app answers /console (HTML pages: not the JSON API, not in its OpenAPI).
        self.console = api.console.resource() if api.console is not None else None

    def render(self, request):
        started = self.api.clock()
        self.api.metrics.in_flight.inc()
        request.notifyFinish().addBoth(self._finished, request, started)
        if self.console is not None and (request.path == b"/console" or request.path.startswith(b"/console/")):
            return self.console.render(request)
        return self.inner.render(request)

    def _finished(self, result, request, started: float) -> None:
        try:
            self.api.metrics.in_flight.dec()
            seconds = max(0.0, self.api.clock() - started)
            method = request.method.decode("ascii", "replace")
            route = _route_of(request)
            status = request.code
            outcome = getattr(request, "vgw_outcome", None) or ("ok" if status < 400 else f"http-{status}")
            if result is not None:  # the connection was lost before the answer was written
                outcome = "connection-lost"
            self.api.metrics.observe(route=route, method=method, status=status, code=outcome, seconds=seconds)
            log.info("{method} {path} {status} {outcome} {latency_ms}ms", event="http.request", method=method,
                     path=request.path.decode("ascii", "replace"), route=route, status=status,
                     agency=getattr(request, "vgw_agency", None), voucher_id=getattr(request, "vgw_voucher_id", None),
                     outcome=outcome, latency_ms=round(seconds * 1000, 3))
        except Exception:  # observing must never break answering; our bug, logged
            log.failure("observing the request failed")


def _route_of(request) -> str:
    """The routing table's template the request matched (bounded label values), or ``unmatched``."""
    mapper = getattr(IKleinRequest(request, None), "mapper", None)
    if mapper is None:
        return "unmatched"
    try:
        rule, _ = mapper.match(return_rule=True)
    except HTTPException:
        return "unmatched"
    return rule.rule


class GatewayHttpApi:
    app = Klein()

    def __init__(self, service, settings: ApiSettings | None = None, *, metrics: HttpMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic, actions=None, statements=None, console=None) -> None:
        """``settings`` None reads them from the ``VGW_*`` environment (``ApiSettings.from_environ``);
        ``actions`` is the :class:`~adapters.services.actions.ActionService` (approval routes answer 404 without);
        ``statements`` the :class:`~adapters.statements.service.StatementService` (likewise)."""
        self.service = service
        self.actions = actions
        self.statements = statements
        self.console = console  # adapters/console/routes.py Console: the web console under /console
        self.settings = settings if settings is not None else ApiSettings.from_environ()
        self.metrics = metrics if metrics is not None else HttpMetrics()
        self.clock = clock
        self.rate_limiter = AgencyRateLimiter(self.settings.rate_limit, clock)
        if console is not None:
            console.rate_limiter = self.rate_limiter  # its pages spend the agency's tokens like /v1

    def _send(self, request, answer: Answer) -> bytes:
        request.vgw_outcome = answer.outcome
        if answer.voucher_id is not None:
            request.vgw_voucher_id = answer.voucher_id
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
            return self._send(request, internal_error(instance))

        d = deferToThread(work, *args)
        d.addCallbacks(lambda answer: self._send(request, answer), failed)
        return d

    def _caller(self, request):
        """The client certificate, after the caller's agency (its OU, chained to our CA by the handshake;
        the service checks the rest) has been charged one token. Returns (certificate, None) or (None, the
        429 answer). A certificate without an agency shares one bucket with all such."""
        cert = peer_certificate(request.transport)
        agency = agency_of_client(cert) if cert is not None else None
        request.vgw_agency = agency
        wait = self.rate_limiter.take(agency or "")
        if wait:
            refusal = Refusal("rate-limited", f"more than {self.rate_limiter.limit.burst} requests at once or "
                              f"{self.rate_limiter.limit.rate:g} per second; retry after {wait} s")
            answer = Answer.problem(refusal, request.uri.decode("ascii", "replace"))
            return None, Answer(answer.status, answer.content_type, answer.body, {"Retry-After": str(wait)},
                                outcome=answer.outcome)
        return cert, None

    def _posted(self, request, work, *args):
        """A POST of a signed document: rate limit, the streamed body cap, then ``work(*args, body, cert)``."""
        cert, limited = self._caller(request)
        if limited:
            return self._send(request, limited)
        if getattr(request, "body_too_large", False):
            return self._send(request, Answer.problem(
                Refusal("too-large", f"the body is larger than {request.max_body} bytes"),
                request.uri.decode("ascii", "replace")))
        return self._run(request, work, *args, request.content.read(), cert)

    @app.route("/v1/vouchers", methods=["POST"])
    def submit_voucher(self, request):
        return self._posted(request, self.service.submit_voucher)

    @app.route("/v1/vouchers/<string:voucher_id>/actions", methods=["POST"])
    def submit_action(self, request, voucher_id):
        request.vgw_voucher_id = voucher_id
        if self.actions is None:
            return self._send(request, Answer.problem(Refusal("not-found", "approvals are not served here"),
                                                      request.uri.decode("ascii", "replace")))
        return self._posted(request, self.actions.submit_action, voucher_id)

    @app.route("/v1/queues/<string:role>", methods=["GET"])
    def work_queue(self, request, role):
        instance = request.uri.decode("ascii", "replace")
        cert, limited = self._caller(request)
        if limited:
            return self._send(request, limited)
        if self.actions is None:
            return self._send(request, Answer.problem(Refusal("not-found", "approvals are not served here"), instance))
        try:
            limit = parse_limit(request.args)
        except Refusal as refusal:
            return self._send(request, Answer.problem(refusal, instance))
        return self._run(request, self.actions.queue, role, cert, limit)

    def _list(self, request, work, *, with_status: bool):
        """A paged list route: rate limit, parse the query string (400 when bad), then ``work(query, cert)``."""
        cert, limited = self._caller(request)
        if limited:
            return self._send(request, limited)
        try:
            query = parse_list_query(request.args, with_status=with_status)
        except Refusal as refusal:
            return self._send(request, Answer.problem(refusal, request.uri.decode("ascii", "replace")))
        return self._run(request, work, query, cert)

    @app.route("/v1/vouchers", methods=["GET"])
    def list_vouchers(self, request):
        return self._list(request, self.service.list_vouchers, with_status=True)

    @app.route("/v1/vouchers/<string:voucher_id>", methods=["GET"])
    def voucher_status(self, request, voucher_id):
        request.vgw_voucher_id = voucher_id
        cert, limited = self._caller(request)
        if limited:
            return self._send(request, limited)
        return self._run(request, self.service.voucher_status, voucher_id, cert)

    @app.route("/v1/rejections", methods=["GET"])
    def list_rejections(self, request):
        return self._list(request, self.service.list_rejections, with_status=False)

    @app.route("/v1/statements", methods=["GET"])
    def statement(self, request):
        """The caller's statement (對帳單) as CSV, camt.053 or PDF: rate limit, the strict query (400 when bad)."""
        instance = request.uri.decode("ascii", "replace")
        cert, limited = self._caller(request)
        if limited:
            return self._send(request, limited)
        if self.statements is None:
            return self._send(request, Answer.problem(Refusal("not-found", "statements are not served here"),
                                                      instance))
        try:
            query = parse_statement_query(request.args)
        except Refusal as refusal:
            return self._send(request, Answer.problem(refusal, instance))
        return self._run(request, self.statements.statement, query, cert)

    @app.route("/metrics", methods=["GET"])
    def metrics_exposition(self, request):
        return self._send(request, Answer(200, METRICS_CONTENT_TYPE, self.metrics.exposition()))

    @app.route("/openapi.json", methods=["GET"])
    def openapi(self, request):
        return self._send(request, Answer.json(200, openapi_document()))

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
        code = {404: "not-found", 405: "method-not-allowed"}.get(error.code, "bad-request")
        refusal = Refusal(code, f"{request.method.decode('ascii', 'replace')} {request.path.decode('ascii', 'replace')}"
                                f": {error.name.lower()}")
        return self._send(request, Answer.problem(refusal, request.uri.decode("ascii", "replace")))

    @app.handle_errors(Exception)
    def unexpected(self, request, failure):
        instance = request.uri.decode("ascii", "replace")
        log.failure("unhandled error answering {uri}", failure, uri=instance)
        return self._send(request, internal_error(instance))


def internal_error(instance: str | None = None) -> Answer:
    """The answer to our own bug, for any transport: 500, a problem document that leaks nothing."""
    return Answer.json(500, problem_for_internal_error(instance), PROBLEM_MEDIA_TYPE, outcome="internal-error")
