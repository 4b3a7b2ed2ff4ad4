"""The treasury operator's pages: a day's bank messages, returned and unconfirmed lines, budget balances, and
the dead-letter queue with its audited replay. Every one refuses any other viewer (``console-forbidden``)."""

from __future__ import annotations

import datetime
from urllib.parse import quote

from adapters.console.html import Markup, field, link, money, table
from adapters.console.view import PAGE, Reply, View, day_arg, taipei_midnight, when
from gateway.business_time import TAIPEI
from gateway.errors import Refusal
from gateway.store import AuditEvent, utc_text


class TreasuryPages:
    """Mixed into :class:`~adapters.console.routes.Console` (which gives ``store``, ``reads``, ``csrf``,
    ``dead_letters``, ``clock``; ``_line_table`` comes from the agency pages)."""

    def _treasury_only(self, view: View) -> None:
        if not view.viewer.treasury:
            raise Refusal("console-forbidden", f"agency {view.viewer.agency} may not see the treasury's pages")

    def treasury_page(self, view: View) -> Reply:
        self._treasury_only(view)
        t = view.t
        day = day_arg(view, "day") or self.clock().astimezone(TAIPEI).date()
        start, end = taipei_midnight(day), taipei_midnight(day + datetime.timedelta(days=1))
        body = Markup("")
        for direction, title, cursor_name in (("out", t["batches"], "out_cursor"), ("in", t["acks"], "in_cursor")):
            messages, cursor = self.reads.bank_messages(direction, start, end, after=view.arg(cursor_name), limit=PAGE)
            body += Markup("<h2>{} {}</h2>").format(title, day.isoformat()) + table(
                [t["message_id"], t["type"], t["count"], t["control_sum"], t["created_at"], t["sent_at"]],
                [[m.message_id, m.message_type, m.payment_count, money(m.control_sum), when(m.created_at),
                  when(m.sent_at)] for m in messages], f"messages-{direction}")
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
            rows.append([letter.message_id, letter.died_in, letter.reason, letter.deaths, when(letter.died_at),
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
