"""Page building with strict escaping: every value goes through :mod:`markupsafe` (``Markup.format`` and
``escape`` escape their arguments; only our own literal templates are trusted markup), so a hostile payee
name or message body is text on the page, never markup. No inline script or style: the one stylesheet and the
one script are served from /console/static, which the Content-Security-Policy below allows and nothing else."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from urllib.parse import urlencode

from markupsafe import Markup, escape


def content_security_policy(signer_url: str) -> str:
    """The console's policy: everything from the gateway itself, and the page's script may also reach the
    person's local signing agent at ``signer_url`` (docs/signing.md)."""
    return (f"default-src 'self'; connect-src 'self' {signer_url}; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'none'")


SIGNER_SCRIPT = resources.files("adapters.console").joinpath("static", "signer.js").read_bytes()
"""adapters/console/static/signer.js: the one script of the console (the card's sign-in and signatures)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

STYLESHEET = b"""body{font-family:sans-serif;margin:0 1.5em 2em}
header{border-bottom:1px solid #999;padding:.5em 0}nav a{margin-right:.8em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .5em;text-align:left}
.who{float:right}.error{color:#a00}.ok{color:#070}pre{white-space:pre-wrap;max-width:60em}
form.inline{display:inline}label{margin-right:.6em}
"""


def link(path: str, text, **query) -> Markup:
    params = {k: v for k, v in query.items() if v not in (None, "")}
    href = path + ("?" + urlencode(params) if params else "")
    return Markup('<a href="{}">{}</a>').format(href, text)


def table(headings: Iterable, rows: Iterable[Iterable], table_id: str = "") -> Markup:
    """A table; each cell is escaped unless it is already Markup (a link we built)."""
    head = Markup("").join(Markup("<th>{}</th>").format(h) for h in headings)
    body = Markup("").join(Markup("<tr>{}</tr>").format(Markup("").join(Markup("<td>{}</td>").format(
        "" if c is None else c) for c in row)) for row in rows)
    return Markup('<table id="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>').format(table_id, head, body)


def field(name: str, label, value="", kind: str = "text", error: str | None = None) -> Markup:
    out = Markup('<label for="{0}">{1}</label><input id="{0}" name="{0}" type="{2}" value="{3}">').format(
        name, label, kind, value or "")
    if error:
        out += Markup(' <span class="error" id="error-{}">{}</span>').format(name, error)
    return out


def select(name: str, label, options: Iterable[tuple[str, str]], chosen: str | None) -> Markup:
    items = Markup("").join(Markup('<option value="{}"{}>{}</option>').format(
        value, Markup(" selected") if value == chosen else "", text) for value, text in options)
    return Markup('<label for="{0}">{1}</label><select id="{0}" name="{0}">{2}</select>').format(name, label, items)


def page(title, body: Markup, *, t: dict[str, str], viewer, lang: str, path: str) -> bytes:
    """The whole document: header with who you are, the navigation their role allows, the body."""
    nav = [("/console/", t["nav_home"]), ("/console/vouchers", t["nav_search"]), ("/console/queue", t["nav_queue"]),
           ("/console/rejections", t["nav_rejections"]), ("/console/statements", t["nav_statements"]),
           ("/console/prepare", t["nav_prepare"])]
    if viewer is not None and viewer.treasury:
        nav += [("/console/treasury", t["nav_treasury"]), ("/console/treasury/returns", t["nav_returns"]),
                ("/console/treasury/unconfirmed", t["nav_unconfirmed"]),
                ("/console/treasury/dead-letters", t["nav_dead"]), ("/console/treasury/budgets", t["nav_budgets"])]
    nav_html = Markup("").join(link(p, text) for p, text in nav)
    other = "zh-TW" if lang == "en" else "en"
    who = Markup("")
    if viewer is not None and viewer.person:
        who = Markup('<span class="who" id="who">{}: <strong id="person">{}</strong> ({}) · {}: {} · {}</span>').format(
            t["signed_in_person"], viewer.person, ", ".join(viewer.roles), t["agency"], viewer.agency,
            link("/console/sign-in", t["sign_out"]))
    elif viewer is not None:
        kind = t["treasury_operator"] if viewer.treasury else t["agency_staff"]
        who = Markup('<span class="who" id="who">{}: {} ({}: {}, {}) · {}</span>').format(
            t["signed_in_as"], viewer.subject, t["agency"], viewer.agency, kind,
            link("/console/sign-in", t["sign_in_with_card"]))
    html_lang = "zh-Hant-TW" if lang == "zh-TW" else "en"
    document = Markup(
        '<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{title} - {app}</title>'
        '<link rel="stylesheet" href="/console/static/console.css"></head><body><header>{who}<strong>{app}</strong> '
        '{switch}<nav>{nav}</nav></header><main><h1>{title}</h1>{body}</main></body></html>').format(
        lang=html_lang, title=title, app=t["title"], who=who, nav=nav_html, body=body,
        switch=link(path, t["language"], lang=other))
    return document.encode("utf-8")


def money(amount) -> str:
    return "" if amount is None else f"{int(amount):,}"


__all__ = ["Markup", "escape", "link", "table", "field", "select", "page", "money", "SECURITY_HEADERS", "STYLESHEET"]
