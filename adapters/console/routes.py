"""The console's routes (klein), served for ``/console`` paths by the gateway's own site (adapters/http_api.py
routes them here, apart from the JSON API and its OpenAPI document).

Each page is one blocking call in Twisted's thread pool, like the API's handlers: name the viewer from the
TLS client certificate (:mod:`adapters.console.identity`), read through the store, render with
:mod:`adapters.console.html`. A refusal (no certificate, unknown agency, not yours, a treasury page for an
agency, a bad cursor, a missing CSRF token) is an HTML page with its stable code and message and the HTTP
status the API would give it; anything else is our bug, logged, and answered 500 with nothing leaked.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from urllib.parse import parse_qs, quote

from klein import Klein
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from werkzeug.exceptions import HTTPException

from gateway.bank_directory import BankDirectory
from gateway.business_time import TAIPEI
from gateway.errors import Refusal
from gateway.iso_codes import describe_reason
from gateway.store import AuditEvent, utc_text
from gateway.voucher_xml import read_stored_voucher
from gateway.workflow import QUEUE_OF, Actor, Status

from ..client_identity import agency_of_client
from ..clock import utc_now
from ..tls import peer_certificate
from . import html
from .html import Markup, field, link, money, select, table
from .identity import CsrfTokens, Viewer, cross_site, viewer_of
from .messages import DEFAULT_LANGUAGE, LANGUAGES, labels
from .reads import ConsoleReads, decode, encode
from .voucher_form import CHOICES, FORM_LINES, HEADER_FIELDS, LINE_FIELDS, build_voucher, line_field

log = Logger(namespace="vgw.console")

PAGE = 50
LANG_COOKIE = b"vgw_console_lang"
_STATUS = {"console-forbidden": 403, "csrf-invalid": 403, "cross-site": 403, "not-found": 404,
           "cursor-invalid": 400, "query-invalid": 400, "broker-unavailable": 503, "replay-refused": 409,
           "form-invalid": 422}
AGENCY_QUEUES = ("reviewer", "accountant", "head", "releaser", "preparer")


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class View:
    """What a page handler gets: who, in which language, the query (or posted form) as text."""

    viewer: Viewer
    lang: str
    t: dict[str, str]
    args: dict[str, str]
    path: str

    def arg(self, name: str) -> str | None:
        value = self.args.get(name, "").strip()
        return value or None

    def page(self, title: str, body: Markup, status: int = 200) -> Reply:
        return Reply(status, html.page(title, body, t=self.t, viewer=self.viewer, lang=self.lang, path=self.path))


def _texts(args: dict[bytes, list[bytes]]) -> dict[str, str]:
    out = {}
    for name, values in args.items():
        try:
            out[name.decode("utf-8")] = values[0].decode("utf-8") if values else ""
        except UnicodeDecodeError:
            raise Refusal("query-invalid", "the query must be UTF-8") from None
    return out


def _day(view: View, name: str) -> datetime.date | None:
    text = view.arg(name)
    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise Refusal("query-invalid", f"{name!r} must be a date YYYY-MM-DD, not {text!r}") from None


def _taipei_midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(0), TAIPEI)


def _when(at: datetime.datetime | None) -> str:
    return "" if at is None else at.astimezone(TAIPEI).strftime("%Y-%m-%d %H:%M:%S")


class Console:
    app = Klein()

    def __init__(self, *, intake, store, csrf: CsrfTokens, dead_letters=None, banks: BankDirectory | None = None,
                 clock: Callable[[], datetime.datetime] = utc_now) -> None:
        """``intake`` names the viewer (:meth:`~adapters.intake_service.IntakeService.calling_agency`); ``store``
        is the SQL store; ``dead_letters`` a :class:`~adapters.console.dead_letters.DeadLetters` when the bank
        exchange runs over RabbitMQ (else the dead-letter page says there is none)."""
        self.intake = intake
        self.store = store
        self.reads = ConsoleReads(store)
        self.csrf = csrf
        self.dead_letters = dead_letters
        self.banks = banks if banks is not None else BankDirectory.shipped()
        self.clock = clock
        self.rate_limiter = None
        """The API's per-agency token buckets (set by :class:`~adapters.http_api.GatewayHttpApi`)."""

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

        def work() -> Reply:
            t = labels(lang)
            try:
                if cert is None:
                    raise Refusal("client-certificate-required", "a client certificate is required")
                agency = self.intake.calling_agency(cert, self.clock())
                viewer = viewer_of(cert, agency)
                args = _texts({k: v for k, v in request.args.items() if k != b"lang"})
                if post:
                    if cross_site(headers["origin"], headers["sec-fetch-site"], headers["host"]):
                        raise Refusal("cross-site", "a form of another site may not act here")
                    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                                         keep_blank_values=True).items()}
                    if not self.csrf.valid(viewer, form.get("csrf")):
                        raise Refusal("csrf-invalid", "the form's token is missing or not yours; reload the page")
                    args = form
                return handler(View(viewer, lang, t, args, path), *extra)
            except Refusal as refusal:
                status = _STATUS.get(refusal.code, refusal.http_status)
                message = "; ".join(p.message for p in refusal.problems)
                body_html = Markup('<p class="error" id="refusal"><code>{}</code>: {}</p>').format(refusal.code,
                                                                                                  message)
                return Reply(status, html.page(t["refused"], body_html, t=t, viewer=None, lang=lang, path=path))

        def write(reply: Reply) -> bytes:
            request.vgw_outcome = "ok" if reply.status < 400 else f"console-{reply.status}"
            request.setResponseCode(reply.status)
            request.setHeader(b"Content-Type", reply.content_type.encode("ascii"))
            for name, value in {**html.SECURITY_HEADERS, **reply.headers}.items():
                request.setHeader(name.encode("ascii"), value.encode("utf-8"))
            return reply.body

        def failed(failure):
            log.failure("console error answering {uri}", failure, uri=request.uri.decode("ascii", "replace"))
            return write(Reply(500, b"<!doctype html><title>500</title><p>internal error</p>"))

        d = deferToThread(work)
        d.addCallbacks(write, failed)
        return d

    # --- routes -----------------------------------------------------------------------------------------------

    @app.route("/console/static/console.css", methods=["GET"])
    def stylesheet(self, request):
        request.setHeader(b"Content-Type", b"text/css; charset=utf-8")
        for name, value in html.SECURITY_HEADERS.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
        return html.STYLESHEET

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

    # --- agency pages -----------------------------------------------------------------------------------------

    def home_page(self, view: View) -> Reply:
        t = view.t
        body = Markup('<p id="whoami">{}: <strong>{}</strong></p><p>{}: {} ({})</p><p>{}</p>').format(
            t["signed_in_as"], view.viewer.subject, t["agency"], view.viewer.agency,
            t["treasury_operator"] if view.viewer.treasury else t["agency_staff"], t["who_help"])
        return view.page(t["title"], body)

    def _scope(self, view: View) -> str | None:
        """The agency a list is limited to: the viewer's own, or for a treasury operator the one asked for."""
        return view.arg("agency") if view.viewer.treasury else view.viewer.agency

    def search_page(self, view: View) -> Reply:
        t = view.t
        statuses = [("", t["any"])] + [(s.value, s.value) for s in Status]
        form = Markup('<form method="get" action="/console/vouchers" id="search">{}{}{}{}{}{}'
                      '<button type="submit" id="search-button">{}</button></form>').format(
            field("id", t["voucher_id"], view.arg("id")), field("payee", t["payee"], view.arg("payee")),
            field("from", t["date_from"], view.arg("from"), "date"), field("to", t["date_to"], view.arg("to"), "date"),
            select("status", t["status"], statuses, view.arg("status") or ""),
            field("agency", t["agency"], view.arg("agency")) if view.viewer.treasury else Markup(""), t["search"])
        voucher_id, payee = view.arg("id"), view.arg("payee")
        if voucher_id:
            records = [r for r in self.store.revisions(voucher_id) if view.viewer.may_see_agency(r.agency)]
            results, cursor = self._voucher_table(t, records), None
        elif payee:
            lines, cursor = self.reads.payee_lines(agency=self._scope(view), prefix=payee, after=view.arg("cursor"),
                                                   limit=PAGE)
            results = self._line_table(t, lines, "results") if lines else None
        else:
            start, end = _day(view, "from"), _day(view, "to")
            status = view.arg("status")
            if status is not None and status not in {s.value for s in Status}:
                raise Refusal("query-invalid", f"no status {status!r}")
            records, cursor = self.reads.vouchers(
                agency=self._scope(view), status=status,
                received_from=_taipei_midnight(start) if start else None,
                received_to=_taipei_midnight(end + datetime.timedelta(days=1)) if end else None,
                after=view.arg("cursor"), limit=PAGE)
            results = self._voucher_table(t, records)
        body = form + (results if results is not None else Markup('<p id="results">{}</p>').format(t["no_results"]))
        if cursor:
            body += Markup('<p>{}</p>').format(link("/console/vouchers", t["next_page"],
                                                    **{**view.args, "cursor": cursor}))
        return view.page(t["nav_search"], body)

    def _voucher_table(self, t, records) -> Markup | None:
        if not records:
            return None
        return table([t["voucher_id"], t["revision"], t["agency"], t["status"], t["received_at"], t["total"],
                      t["lines"]],
                     [[link(f"/console/vouchers/{quote(r.voucher_id)}", r.voucher_id), r.revision, r.agency, r.status,
                       _when(r.received_at), money(r.summary.get("control_total")), r.summary.get("line_count")]
                      for r in records], "results")

    def _line_table(self, t, lines, table_id: str) -> Markup:
        return table([t["voucher_id"], t["line"], t["payee"], t["amount"], t["state"], t["end_to_end_id"],
                      t["reason"]],
                     [[link(f"/console/vouchers/{quote(row.voucher_id)}", row.voucher_id), row.line_number, payee,
                       money(row.amount), row.state.value, row.end_to_end_id,
                       describe_reason(row.reason_code, row.reason_text) if row.reason_code else ""]
                      for row, payee in lines], table_id)

    def detail_page(self, view: View, voucher_id: str) -> Reply:
        t = view.t
        revisions = self.store.revisions(voucher_id)
        if not revisions or not view.viewer.may_see_agency(revisions[-1].agency):
            raise Refusal("not-found", f"no voucher {voucher_id} of agency {view.viewer.agency}")
        latest = revisions[-1]
        voucher = read_stored_voucher(latest.received_bytes)
        body = table([t["voucher_id"], t["agency"], t["status"], t["purpose"], t["budget_subject"], t["total"],
                      t["due_on"]],
                     [[voucher_id, latest.agency, latest.status, voucher.purpose, voucher.budget_subject,
                       money(voucher.total_amount), latest.due_on.isoformat() if latest.due_on else ""]], "summary")
        body += Markup("<h2>{}</h2>").format(t["lines"]) + table(
            [t["line"], t["payee"], t["bank"], t["account"], t["amount"], t["memo"]],
            [[line.number, line.payee_name, f"{line.bank_code}-{line.branch_code}", line.account_number,
              money(line.amount), line.memo or ""] for line in voucher.lines], "lines")
        history, receipts, signatures, payments = [], [], [], []
        for r in revisions:
            for entry in self.store.history(r.subject):
                detail = entry.event.detail
                history.append([r.revision, _when(entry.event.at), entry.event.action, entry.event.actor,
                                detail.get("role"), detail.get("status"),
                                " ".join(filter(None, [detail.get("reason_code"), detail.get("reason")]))])
                if entry.event.action == "voucher.received":
                    signatures.append([r.revision, detail.get("role"), entry.event.actor, _when(entry.event.at),
                                       "submit", detail.get("grant")])
            receipts.append([r.revision, link(f"/console/vouchers/{quote(voucher_id)}/receipts/{r.revision}",
                                              r.receipt_id), _when(r.received_at), r.received_sha256])
            for action in self.store.actions(r.voucher_id, r.revision):
                signatures.append([r.revision, action.stage, action.person, _when(action.signed_at),
                                   action.decision + (f" ({action.reason_code})" if action.reason_code else ""),
                                   action.grant_kind])
            payments += [(row, None) for row in self.store.payments_of(r.voucher_id, r.revision)]
        body += Markup("<h2>{}</h2>").format(t["history"]) + table(
            [t["revision"], t["at"], t["event"], t["actor"], t["role"], t["status"], t["reason"]], history, "history")
        body += Markup("<h2>{}: {}</h2>").format(t["evidence"], t["receipts"]) + table(
            [t["revision"], t["receipt_id"], t["received_at"], t["sha256"]], receipts, "receipts")
        body += Markup("<h2>{}</h2>").format(t["signatures"]) + table(
            [t["revision"], t["stage"], t["signer"], t["signed_at"], t["decision"], t["grant"]], signatures,
            "signatures")
        body += Markup("<h2>{}</h2>").format(t["bank_acks"]) + table(
            [t["line"], t["end_to_end_id"], t["amount"], t["state"], t["message_id"], t["bank_reference"],
             t["booked_on"], t["reason"]],
            [[row.line_number, row.end_to_end_id, money(row.amount), row.state.value, row.message_id,
              row.bank_reference, row.booked_on.isoformat() if row.booked_on else "",
              describe_reason(row.reason_code, row.reason_text) if row.reason_code else ""] for row, _ in payments],
            "bank-acks")
        body += Markup("<h2>{}</h2>").format(t["deposit_notices"]) + self._notices(t, revisions)
        return view.page(f"{t['detail_title']} {voucher_id}", body)

    def _notices(self, t, revisions) -> Markup:
        """Deposit notices (入戶通知, migration v0009) per line, where this store keeps them (``notices_of``)."""
        notices_of = getattr(self.store, "notices_of", None)
        rows = [row for r in revisions for row in notices_of(r.voucher_id, r.revision)] if notices_of else []
        if not rows:
            return Markup('<p id="notices">{}</p>').format(t["not_recorded"])

        def value(row, name):
            found = getattr(row, name, None)
            if isinstance(found, datetime.datetime):
                return _when(found)
            return getattr(found, "value", found)

        names = ("revision", "line_number", "channel", "address", "state", "attempts", "sent_at", "last_error")
        return table([t["revision"], t["line"], t["channel"], t["address"], t["state"], t["attempts"], t["sent_at"],
                      t["reason"]], [[value(row, name) for name in names] for row in rows], "notices")

    def receipt_file(self, view: View, voucher_id: str, revision: int) -> Reply:
        record = self.store.get(voucher_id, revision)
        if record is None or not view.viewer.may_see_agency(record.agency):
            raise Refusal("not-found", f"no receipt of {voucher_id} revision {revision}")
        return Reply(200, record.receipt_xml, "application/xml", {
            "Content-Disposition": f'attachment; filename="receipt-{record.receipt_id}.xml"'})

    def queue_page(self, view: View) -> Reply:
        t = view.t
        roles = AGENCY_QUEUES + (("treasury",) if view.viewer.treasury else ())
        role = view.arg("role") or roles[0]
        if role not in roles:
            raise Refusal("query-invalid", f"no work queue {role!r}; known: {', '.join(roles)}")
        status = QUEUE_OF[Actor(role)]
        after = None
        if view.arg("cursor"):
            after = decode(view.arg("cursor"), "tsi")
        agency = None if role == "treasury" else self._scope(view)
        records = self.store.queue(status.value, agency=agency, limit=PAGE + 1, after=after)
        more, records = len(records) > PAGE, records[:PAGE]
        form = Markup('<form method="get" action="/console/queue">{}<button type="submit">{}</button></form>').format(
            select("role", t["queue_of"], [(r, r) for r in roles], role), t["show"])
        body = form + (self._voucher_table(t, records) or Markup('<p id="results">{}</p>').format(t["no_results"]))
        if more:
            last = records[-1]
            body += Markup("<p>{}</p>").format(link("/console/queue", t["next_page"], role=role,
                                                    cursor=encode(last.status_at, last.voucher_id, last.revision)))
        return view.page(t["queue_title"], body)

    def rejections_page(self, view: View) -> Reply:
        t = view.t
        records, cursor = self.reads.vouchers(agency=self._scope(view), status="rejected", received_from=None,
                                              received_to=None, after=view.arg("cursor"), limit=PAGE)
        rows = []
        for record in records:
            latest = self.store.get(record.voucher_id)
            if latest is None or latest.revision != record.revision:
                continue  # corrected since
            reasons = [e.event.detail for e in self.store.history(record.subject) if "reason_code" in e.event.detail]
            last = reasons[-1] if reasons else {}
            rows.append([link(f"/console/vouchers/{quote(record.voucher_id)}", record.voucher_id), record.revision,
                         record.agency, _when(record.status_at), last.get("role"), last.get("reason_code"),
                         last.get("reason")])
        body = table([t["voucher_id"], t["revision"], t["agency"], t["at"], t["role"], t["reason"], ""], rows,
                     "results") if rows else Markup('<p id="results">{}</p>').format(t["no_results"])
        if cursor:
            body += Markup("<p>{}</p>").format(link("/console/rejections", t["next_page"], cursor=cursor))
        return view.page(t["rejections_title"], body)

    def statements_page(self, view: View) -> Reply:
        t = view.t
        today = self.clock().astimezone(TAIPEI).date()
        start = _day(view, "from") or today.replace(day=1)
        end = _day(view, "to") or today
        form = Markup('<form method="get" action="/console/statements">{}{}<button type="submit">{}</button>'
                      '</form>').format(field("from", t["statement_from"], start.isoformat(), "date"),
                                        field("to", t["statement_to"], end.isoformat(), "date"), t["show"])
        span = {"from": start.isoformat(), "to": end.isoformat()}
        links = Markup('<ul id="downloads"><li>{}</li><li>{}</li><li>{}</li></ul>').format(
            link("/v1/statements", t["download_csv"], format="csv", **span),
            link("/v1/statements", t["download_camt"], format="camt053", **span),
            link("/v1/statements", t["download_pdf"], format="pdf", **span))
        return view.page(t["statements_title"], form + links)

    def _prepare_form(self, view: View, errors: dict[str, list[str]] | None = None) -> Markup:
        t, values, errors = view.t, view.args, errors or {}

        def err(name):
            return "; ".join(errors.get(name, [])) or None

        today = self.clock().astimezone(TAIPEI).date()
        defaults = {"fiscal_year": str(today.year - 1911), "prepared_on": today.isoformat()}
        header = Markup("").join(
            (select(name, t[name], [(c, c) for c in CHOICES[name]], values.get(name))
             + (Markup(' <span class="error" id="error-{}">{}</span>').format(name, err(name)) if err(name) else ""))
            if name in CHOICES else field(name, t[name], values.get(name, defaults.get(name, "")), error=err(name))
            for name in HEADER_FIELDS)
        rows = []
        for row in range(1, FORM_LINES + 1):
            cells = []
            for name in LINE_FIELDS:
                key = line_field(row, name)
                if name in CHOICES:
                    cell = select(key, "", [(c, c) for c in CHOICES[name]], values.get(key))
                else:
                    cell = Markup('<input id="{0}" name="{0}" value="{1}" aria-label="{2}">').format(
                        key, values.get(key, ""), t[name])
                if err(key):
                    cell += Markup('<br><span class="error" id="error-{}">{}</span>').format(key, err(key))
                cells.append(cell)
            rows.append([row, *cells])
        general = Markup("")
        if errors:
            general = Markup('<p class="error" id="form-errors">{}{}</p>').format(
                t["form_errors"], Markup("").join(Markup("<br>{}").format(m) for m in errors.get("", [])))
        return Markup('{}<form method="post" action="/console/prepare" id="prepare">'
                      '<input type="hidden" name="csrf" value="{}"><p>{}</p>{}'
                      '<button type="submit" id="prepare-button">{}</button></form>').format(
            general, self.csrf.token(view.viewer), header,
            table([t["line"]] + [t[name] for name in LINE_FIELDS], rows, "payees"), t["download_xml"])

    def prepare_page(self, view: View) -> Reply:
        body = Markup("<p>{}</p>").format(view.t["prepare_help"]) + self._prepare_form(view)
        return view.page(view.t["prepare_title"], body)

    def prepare_submit(self, view: View) -> Reply:
        if view.viewer.treasury:
            raise Refusal("console-forbidden", "vouchers are prepared by agencies")
        today = self.clock().astimezone(TAIPEI).date()
        result = build_voucher(view.args, agency=view.viewer.agency, today=today, banks=self.banks)
        if result.xml is None:
            return view.page(view.t["prepare_title"], self._prepare_form(view, result.errors), 422)
        return Reply(200, result.xml, "application/xml",
                     {"Content-Disposition": f'attachment; filename="{result.filename}"'})

    # --- treasury pages ---------------------------------------------------------------------------------------

    def _treasury_only(self, view: View) -> None:
        if not view.viewer.treasury:
            raise Refusal("console-forbidden", f"agency {view.viewer.agency} may not see the treasury's pages")

    def treasury_page(self, view: View) -> Reply:
        self._treasury_only(view)
        t = view.t
        day = _day(view, "day") or self.clock().astimezone(TAIPEI).date()
        start, end = _taipei_midnight(day), _taipei_midnight(day + datetime.timedelta(days=1))
        body = Markup("")
        for direction, title, cursor_name in (("out", t["batches"], "out_cursor"), ("in", t["acks"], "in_cursor")):
            messages, cursor = self.reads.bank_messages(direction, start, end, after=view.arg(cursor_name), limit=PAGE)
            body += Markup("<h2>{} {}</h2>").format(title, day.isoformat()) + table(
                [t["message_id"], t["type"], t["count"], t["control_sum"], t["created_at"], t["sent_at"]],
                [[m.message_id, m.message_type, m.payment_count, money(m.control_sum), _when(m.created_at),
                  _when(m.sent_at)] for m in messages], f"messages-{direction}")
            if cursor:
                body += Markup("<p>{}</p>").format(link("/console/treasury", t["next_page"], day=day.isoformat(),
                                                        **{cursor_name: cursor}))
        return view.page(t["treasury_title"], body)

    def _lines_page(self, view: View, title: str, read, path: str) -> Reply:
        self._treasury_only(view)
        lines, cursor = read(after=view.arg("cursor"), limit=PAGE)
        body = self._line_table(view.t, lines, "results") if lines else Markup('<p id="results">{}</p>').format(
            view.t["no_results"])
        if cursor:
            body += Markup("<p>{}</p>").format(link(path, view.t["next_page"], cursor=cursor))
        return view.page(title, body)

    def returns_page(self, view: View) -> Reply:
        return self._lines_page(view, view.t["returns_title"], self.reads.returned_lines, "/console/treasury/returns")

    def unconfirmed_page(self, view: View) -> Reply:
        return self._lines_page(view, view.t["unconfirmed_title"], self.reads.unconfirmed_lines,
                                "/console/treasury/unconfirmed")

    def budgets_page(self, view: View) -> Reply:
        self._treasury_only(view)
        t = view.t
        rows = self.store.budget_balances(view.arg("agency"))
        body = Markup('<form method="get" action="/console/treasury/budgets">{}<button type="submit">{}</button>'
                      '</form>').format(field("agency", t["agency"], view.arg("agency")), t["show"])
        body += table([t["agency"], t["fiscal_year"], t["budget_subject"], t["allotted"], t["reserved"], t["consumed"],
                       t["remaining"]],
                      [[k.agency, k.fiscal_year, k.budget_subject, money(b.allotted), money(b.reserved),
                        money(b.consumed), money(b.allotted - b.reserved - b.consumed)] for k, b in rows], "budgets")
        return view.page(t["budgets_title"], body)

    def dead_letters_page(self, view: View) -> Reply:
        self._treasury_only(view)
        t = view.t
        if self.dead_letters is None:
            return view.page(t["dead_title"], Markup('<p id="dead-none">{}</p>').format(t["dead_unavailable"]))
        letters = self.dead_letters.peek(PAGE)
        body = Markup("")
        if view.arg("replayed"):
            body += Markup('<p class="ok" id="replayed">{}: {}</p>').format(t["replayed"], view.arg("replayed"))
        if not letters:
            return view.page(t["dead_title"], body + Markup('<p id="dead-none">{}</p>').format(t["dead_none"]))
        token = self.csrf.token(view.viewer)
        rows = []
        for letter in letters:
            shown = {k: v for k, v in letter.headers.items() if k != "x-death"}
            replay = Markup('<form class="inline" method="post" action="/console/treasury/dead-letters/replay">'
                            '<input type="hidden" name="csrf" value="{}"><input type="hidden" name="message_id" '
                            'value="{}"><input type="hidden" name="sha256" value="{}">'
                            '<button type="submit" class="replay" data-message-id="{}">{}</button></form>').format(
                token, letter.message_id or "", letter.sha256, letter.message_id or "", t["replay"])
            rows.append([letter.message_id, letter.died_in, letter.reason, letter.deaths, _when(letter.died_at),
                         Markup("<pre>{}</pre>").format(repr(shown)), Markup("<pre>{}</pre>").format(letter.preview),
                         replay])
        body += table([t["message_id"], t["died_in"], t["why"], t["deaths"], t["at"], t["headers"],
                       t["body_preview"], ""], rows, "dead-letters")
        return view.page(t["dead_title"], body)

    def replay_submit(self, view: View) -> Reply:
        self._treasury_only(view)
        if self.dead_letters is None:
            raise Refusal("not-found", "no bank broker is configured")
        message_id, sha256 = view.arg("message_id"), view.arg("sha256")
        if not message_id or not sha256:
            raise Refusal("form-invalid", "message_id and sha256 are required")

        def record(letter) -> None:
            self.store.append_audit(AuditEvent(self.clock(), view.viewer.actor, "bank.dlq-replay", message_id,
                                               letter.sha256, {"queue": letter.died_in, "reason": letter.reason,
                                                               "deaths": letter.deaths,
                                                               "operator": view.viewer.subject,
                                                               "at": utc_text(self.clock())}))

        self.dead_letters.replay(message_id, sha256, record)
        return Reply(303, b"", "text/html; charset=utf-8",
                     {"Location": "/console/treasury/dead-letters?replayed=" + quote(message_id)})
