"""The pages every viewer has: home, voucher search and detail (with its evidence), receipts, work queues,
rejections, statement links and the voucher preparation form. Each takes a :class:`~adapters.console.view.View`
and returns a :class:`~adapters.console.view.Reply`; agency staff see their own agency only."""

from __future__ import annotations

import datetime
from urllib.parse import quote

from adapters.console.html import Markup, field, link, money, select, table
from adapters.console.reads import decode, encode
from adapters.console.sign_in import SIGNER_SCRIPT
from adapters.console.view import PAGE, Reply, View, day_arg, taipei_midnight, when
from adapters.console.voucher_form import CHOICES, FORM_LINES, HEADER_FIELDS, LINE_FIELDS, build_voucher, line_field
from gateway.bank.iso_codes import describe_reason
from gateway.business_time import TAIPEI
from gateway.errors import Refusal
from gateway.vouchers.xml_mapping import read_stored_voucher
from gateway.workflow.transitions import QUEUE_OF, Actor, Status

AGENCY_QUEUES = ("reviewer", "accountant", "head", "releaser", "preparer")


class AgencyPages:
    """Mixed into :class:`~adapters.console.routes.Console` (which gives ``store``, ``reads``, ``csrf``, ``banks``,
    ``clock``)."""

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
            start, end = day_arg(view, "from"), day_arg(view, "to")
            status = view.arg("status")
            if status is not None and status not in {s.value for s in Status}:
                raise Refusal("query-invalid", f"no status {status!r}")
            records, cursor = self.reads.vouchers(
                agency=self._scope(view), status=status,
                received_from=taipei_midnight(start) if start else None,
                received_to=taipei_midnight(end + datetime.timedelta(days=1)) if end else None,
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
                       when(r.received_at), money(r.summary.get("control_total")), r.summary.get("line_count")]
                      for r in records], "results")

    def _line_table(self, t, lines, table_id: str) -> Markup:
        return table([t["voucher_id"], t["line"], t["payee"], t["amount"], t["state"], t["end_to_end_id"],
                      t["reason"]],
                     [[link(f"/console/vouchers/{quote(row.voucher_id)}", row.voucher_id), row.line_number, payee,
                       money(row.amount), row.state.value, row.end_to_end_id,
                       describe_reason(row.reason_code, row.reason_text) if row.reason_code else ""]
                      for row, payee in lines], table_id)

    def visible_revisions(self, view: View, voucher_id: str) -> list:
        """Every revision of ``voucher_id``, oldest first, when the viewer may see its agency; otherwise the same
        not-found a voucher that does not exist gets, so a page never tells another agency's vouchers exist."""
        revisions = self.store.revisions(voucher_id)
        if not revisions or not view.viewer.may_see_agency(revisions[-1].agency):
            raise Refusal("not-found", f"no voucher {voucher_id} of agency {view.viewer.agency}")
        return revisions

    def detail_page(self, view: View, voucher_id: str) -> Reply:
        t = view.t
        revisions = self.visible_revisions(view, voucher_id)
        latest = revisions[-1]
        voucher = read_stored_voucher(latest.received_bytes)
        body = table([t["voucher_id"], t["agency"], t["status"], t["purpose"], t["budget_subject"], t["total"],
                      t["due_on"]],
                     [[voucher_id, latest.agency, latest.status, voucher.purpose, voucher.budget_subject,
                       money(voucher.total_amount), latest.due_on.isoformat() if latest.due_on else ""]], "summary")
        body += self.approval_panel(view, latest)
        body += Markup("<h2>{}</h2>").format(t["lines"]) + table(
            [t["line"], t["payee"], t["bank"], t["account"], t["amount"], t["memo"]],
            [[line.number, line.payee_name, f"{line.bank_code}-{line.branch_code}", line.account_number,
              money(line.amount), line.memo or ""] for line in voucher.lines], "lines")
        history, receipts, signatures, payments = [], [], [], []
        for r in revisions:
            for entry in self.store.history(r.subject):
                detail = entry.event.detail
                history.append([r.revision, when(entry.event.at), entry.event.action, entry.event.actor,
                                detail.get("role"), detail.get("status"),
                                " ".join(filter(None, [detail.get("reason_code"), detail.get("reason")]))])
                if entry.event.action == "voucher.received":
                    signatures.append([r.revision, detail.get("role"), entry.event.actor, when(entry.event.at),
                                       "submit", detail.get("grant")])
            receipts.append([r.revision, link(f"/console/vouchers/{quote(voucher_id)}/receipts/{r.revision}",
                                              r.receipt_id), when(r.received_at), r.received_sha256])
            for action in self.store.actions(r.voucher_id, r.revision):
                signatures.append([r.revision, action.stage, action.person, when(action.signed_at),
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
                return when(found)
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
        body += self.queue_buttons(view, role, records)
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
                         record.agency, when(record.status_at), last.get("role"), last.get("reason_code"),
                         last.get("reason")])
        body = table([t["voucher_id"], t["revision"], t["agency"], t["at"], t["role"], t["reason"], ""], rows,
                     "results") if rows else Markup('<p id="results">{}</p>').format(t["no_results"])
        if cursor:
            body += Markup("<p>{}</p>").format(link("/console/rejections", t["next_page"], cursor=cursor))
        return view.page(t["rejections_title"], body)

    def statements_page(self, view: View) -> Reply:
        t = view.t
        today = self.clock().astimezone(TAIPEI).date()
        start = day_arg(view, "from") or today.replace(day=1)
        end = day_arg(view, "to") or today
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
        sign = Markup("")
        if view.viewer.person and "preparer" in view.viewer.roles:  # signed in with the card: sign and submit here
            sign = Markup(' <button type="button" id="sign-and-submit" {}>{}</button>{}').format(
                self.signer_data(view, "/console/prepare", "/console/prepare/submit"), t["sign_and_submit"],
                SIGNER_SCRIPT)
        return Markup('{}<form method="post" action="/console/prepare" id="prepare">'
                      '<input type="hidden" name="csrf" value="{}"><p>{}</p>{}'
                      '<button type="submit" id="prepare-button">{}</button>{}</form>').format(
            general, self.csrf.token(view.viewer), header,
            table([t["line"]] + [t[name] for name in LINE_FIELDS], rows, "payees"), t["download_xml"], sign)

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

