"""The console's routes (klein), served for ``/console`` paths by the gateway's own site (adapters/http/site.py
routes them here, apart from the JSON API and its OpenAPI document).

Each page is one blocking call in Twisted's thread pool, like the API's handlers: name the viewer from the
TLS client certificate (:mod:`adapters.console.identity`), read through the store, render with
:mod:`adapters.console.html`. A refusal (no certificate, unknown agency, not yours, a treasury page for an
agency, a bad cursor, a missing CSRF token) is an HTML page with its stable code and message and the HTTP
status the API would give it; anything else is our bug, logged, and answered 500 with nothing leaked.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from urllib.parse import parse_qs

from klein import Klein
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from werkzeug.exceptions import HTTPException

from adapters.clock import utc_now
from adapters.console import html
from adapters.console.agency_pages import AgencyPages
from adapters.console.approvals import ApprovalPages
from adapters.console.html import Markup
from adapters.console.identity import CsrfTokens, cross_site, viewer_of
from adapters.console.messages import DEFAULT_LANGUAGE, LANGUAGES, labels
from adapters.console.reads import ConsoleReads
from adapters.console.sign_in import SESSION_COOKIE, SessionSettings, SignInPages
from adapters.console.treasury_pages import TreasuryPages
from adapters.console.view import Reply, View, plain, texts
from adapters.http.client_identity import agency_of_client
from adapters.http.tls import peer_certificate
from gateway.errors import Refusal
from gateway.store import StoreError
from gateway.vouchers.bank_directory import BankDirectory

log = Logger(namespace="vgw.console")

LANG_COOKIE = b"vgw_console_lang"
_STATUS = {"console-forbidden": 403, "csrf-invalid": 403, "cross-site": 403, "not-found": 404,
           "cursor-invalid": 400, "query-invalid": 400, "broker-unavailable": 503, "replay-refused": 409,
           "form-invalid": 422, "store-unavailable": 503}


class Console(AgencyPages, TreasuryPages, SignInPages, ApprovalPages):
    app = Klein()

    def __init__(self, *, intake, store, csrf: CsrfTokens, dead_letters=None, banks: BankDirectory | None = None,
                 clock: Callable[[], datetime.datetime] = utc_now, sessions: SessionSettings | None = None,
                 actions=None) -> None:
        """``intake`` names the viewer (:meth:`~adapters.services.intake.IntakeService.calling_agency`); ``store``
        is the SQL store; ``dead_letters`` a :class:`~adapters.console.dead_letters.DeadLetters` when the bank
        exchange runs over RabbitMQ (else the dead-letter page says there is none)."""
        self.intake = intake
        self.store = store
        self.reads = ConsoleReads(store)
        self.csrf = csrf
        self.dead_letters = dead_letters
        self.banks = banks if banks is not None else BankDirectory.shipped()
        self.clock = clock
        self.actions = actions
        """The :class:`~adapters.services.actions.ActionService` signed decisions go through (None: no approvals)."""
        self.sessions = sessions or SessionSettings()
        self.headers = {**html.SECURITY_HEADERS, "Content-Security-Policy": html.content_security_policy(
            self.sessions.signer_url)}
        """What every answer carries: the security headers, the policy letting the page's script reach the
        person's signing agent and nothing else."""
        self.rate_limiter = None
        """The API's per-agency token buckets (set by :class:`~adapters.http.site.GatewayHttpApi`)."""

    def resource(self):
        return self.app.resource()

    # --- plumbing ---------------------------------------------------------------------------------------------

    def _language(self, request) -> str:
        chosen = request.args.get(b"lang", [None])[0]
        if chosen is not None and chosen.decode("ascii", "replace") in LANGUAGES:
            lang = chosen.decode("ascii")
            request.addCookie(LANG_COOKIE, lang.encode("ascii"), path=b"/console", secure=True, httpOnly=True,
                              sameSite=b"strict")
            return lang
        cookie = (request.getCookie(LANG_COOKIE) or b"").decode("ascii", "replace")
        return cookie if cookie in LANGUAGES else DEFAULT_LANGUAGE

    def _serve(self, request, handler, *extra, post: bool = False):
        """Run ``handler(view, *extra)`` in the thread pool and write its Reply."""
        cert = peer_certificate(request.transport)
        lang = self._language(request)
        path = request.path.decode("ascii", "replace")
        if self.rate_limiter is not None:
            agency = agency_of_client(cert) if cert is not None else None
            wait = self.rate_limiter.take(agency or "")
            if wait:
                request.setResponseCode(429)
                request.setHeader(b"Retry-After", str(wait).encode("ascii"))
                request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
                request.vgw_outcome = "rate-limited"
                return f"rate-limited: retry after {wait} s\n".encode()
        headers = {name: request.getHeader(name) for name in ("origin", "sec-fetch-site", "host")}
        body = request.content.read() if post else b""
        token = (request.getCookie(SESSION_COOKIE.encode("ascii")) or b"").decode("ascii", "replace") or None

        def work() -> Reply:
            t = labels(lang)

            def produce() -> Reply:
                if cert is None:
                    raise Refusal("client-certificate-required", "a client certificate is required")
                agency = self.intake.calling_agency(cert, self.clock())
                viewer = self.signed_in(viewer_of(cert, agency), token, self.clock())
                args = texts({k: v for k, v in request.args.items() if k != b"lang"})
                for part in extra:
                    if isinstance(part, str):
                        plain(part, "path")
                if post:
                    if cross_site(headers["origin"], headers["sec-fetch-site"], headers["host"]):
                        raise Refusal("cross-site", "a form of another site may not act here")
                    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                                         keep_blank_values=True).items()}
                    if not self.csrf.valid(viewer, form.get("csrf")):
                        raise Refusal("csrf-invalid", "the form's token is missing or not yours; reload the page")
                    args = form
                return handler(View(viewer, lang, t, args, path, headers["host"]), *extra)

            return self._answered(produce, t, lang, path)

        def write(reply: Reply) -> bytes:
            request.vgw_outcome = "ok" if reply.status < 400 else f"console-{reply.status}"
            request.setResponseCode(reply.status)
            request.setHeader(b"Content-Type", reply.content_type.encode("ascii"))
            for name, value in {**self.headers, **reply.headers}.items():
                request.setHeader(name.encode("ascii"), value.encode("utf-8"))
            return reply.body

        def failed(failure):
            log.failure("console error answering {uri}", failure, uri=request.uri.decode("ascii", "replace"))
            return write(Reply(500, b"<!doctype html><title>500</title><p>internal error</p>"))

        d = deferToThread(work)
        d.addCallbacks(write, failed)
        return d

    def answer(self, view: View, handler, *extra) -> Reply:
        """``handler(view, *extra)``'s reply, or its refusal (a store failure included) as an HTML page."""
        return self._answered(lambda: handler(view, *extra), view.t, view.lang, view.path)

    def _answered(self, produce: Callable[[], Reply], t: dict[str, str], lang: str, path: str) -> Reply:
        try:
            try:
                return produce()
            except StoreError as exc:  # an outage, not a bug: the store is down or refused a read
                log.warn("console store error answering {path}: {error}", path=path, error=str(exc))
                raise Refusal("store-unavailable", "the gateway's store is not available; try again shortly") from None
        except Refusal as refusal:
            status = _STATUS.get(refusal.code, refusal.http_status)
            message = "; ".join(p.message for p in refusal.problems)
            body_html = Markup('<p class="error" id="refusal"><code>{}</code>: {}</p>').format(refusal.code, message)
            return Reply(status, html.page(t["refused"], body_html, t=t, viewer=None, lang=lang, path=path))

    # --- routes -----------------------------------------------------------------------------------------------

    @app.route("/console/static/console.css", methods=["GET"])
    def stylesheet(self, request):
        request.setHeader(b"Content-Type", b"text/css; charset=utf-8")
        for name, value in html.SECURITY_HEADERS.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
        return html.STYLESHEET

    @app.route("/console/static/signer.js", methods=["GET"])
    def script(self, request):
        request.setHeader(b"Content-Type", b"text/javascript; charset=utf-8")
        for name, value in self.headers.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
        return html.SIGNER_SCRIPT

    @app.route("/console/sign-in", methods=["GET"])
    def sign_in(self, request):
        return self._serve(request, self.sign_in_page)

    @app.route("/console/sign-in/challenge", methods=["POST"])
    def sign_in_challenge(self, request):
        return self._serve(request, self.challenge_submit, post=True)

    @app.route("/console/sign-in", methods=["POST"])
    def sign_in_post(self, request):
        return self._serve(request, self.sign_in_submit, post=True)

    @app.route("/console/sign-out", methods=["POST"])
    def sign_out(self, request):
        return self._serve(request, self.sign_out_submit, post=True)

    @app.route("/console", methods=["GET"])
    @app.route("/console/", methods=["GET"])
    def home(self, request):
        return self._serve(request, self.home_page)

    @app.route("/console/vouchers", methods=["GET"])
    def search(self, request):
        return self._serve(request, self.search_page)

    @app.route("/console/vouchers/<string:voucher_id>", methods=["GET"])
    def detail(self, request, voucher_id):
        return self._serve(request, self.detail_page, voucher_id)

    @app.route("/console/vouchers/<string:voucher_id>/action-document", methods=["POST"])
    def action_document(self, request, voucher_id):
        return self._serve(request, self.action_document_submit, voucher_id, post=True)

    @app.route("/console/vouchers/<string:voucher_id>/actions", methods=["POST"])
    def action(self, request, voucher_id):
        return self._serve(request, self.action_submit, voucher_id, post=True)

    @app.route("/console/vouchers/<string:voucher_id>/receipts/<int:revision>", methods=["GET"])
    def receipt(self, request, voucher_id, revision):
        return self._serve(request, self.receipt_file, voucher_id, revision)

    @app.route("/console/queue", methods=["GET"])
    def queue(self, request):
        return self._serve(request, self.queue_page)

    @app.route("/console/rejections", methods=["GET"])
    def rejections(self, request):
        return self._serve(request, self.rejections_page)

    @app.route("/console/statements", methods=["GET"])
    def statements(self, request):
        return self._serve(request, self.statements_page)

    @app.route("/console/prepare", methods=["GET"])
    def prepare(self, request):
        return self._serve(request, self.prepare_page)

    @app.route("/console/prepare", methods=["POST"])
    def prepare_post(self, request):
        return self._serve(request, self.prepare_submit, post=True)

    @app.route("/console/prepare/submit", methods=["POST"])
    def prepare_sign(self, request):
        return self._serve(request, self.prepare_sign_submit, post=True)

    @app.route("/console/treasury", methods=["GET"])
    def treasury(self, request):
        return self._serve(request, self.treasury_page)

    @app.route("/console/treasury/returns", methods=["GET"])
    def returns(self, request):
        return self._serve(request, self.returns_page)

    @app.route("/console/treasury/unconfirmed", methods=["GET"])
    def unconfirmed(self, request):
        return self._serve(request, self.unconfirmed_page)

    @app.route("/console/treasury/dead-letters", methods=["GET"])
    def dead(self, request):
        return self._serve(request, self.dead_letters_page)

    @app.route("/console/treasury/dead-letters/replay", methods=["POST"])
    def replay(self, request):
        return self._serve(request, self.replay_submit, post=True)

    @app.route("/console/treasury/budgets", methods=["GET"])
    def budgets(self, request):
        return self._serve(request, self.budgets_page)

    @app.handle_errors(HTTPException)
    def http_error(self, request, failure):
        """Unknown pages and wrong methods: the routing library's 404/405, as a plain page with our headers."""
        code = failure.value.code
        request.vgw_outcome = {404: "not-found", 405: "method-not-allowed"}.get(code, "bad-request")
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        for name, value in html.SECURITY_HEADERS.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
        return Markup('<!doctype html><title>{0}</title><p id="refusal"><code>{1}</code>: {0}</p>').format(
            failure.value.name, request.vgw_outcome).encode("utf-8")

    @app.handle_errors(Exception)
    def unexpected(self, request, failure):
        log.failure("console error answering {uri}", failure, uri=request.uri.decode("ascii", "replace"))
        request.setResponseCode(500)
        request.vgw_outcome = "internal-error"
        return b"<!doctype html><title>500</title><p>internal error</p>"
