"""What every console page handler works with: the :class:`View` (who, which language, the query or posted
form as text) and the :class:`Reply` it returns, plus the small readers of dates and times pages share."""

from __future__ import annotations

import dataclasses
import datetime
import re

from adapters.console import html
from adapters.console.html import Markup
from adapters.console.identity import Viewer
from gateway.business_time import TAIPEI
from gateway.errors import Refusal

PAGE = 50
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Characters no query, path or form field has a use for; PostgreSQL refuses NUL in text and lxml refuses all
of them in XML, so they are turned away up front as bad input rather than reaching either."""
FIRST_DAY, LAST_DAY = datetime.date(1912, 1, 1), datetime.date(9998, 12, 31)
"""The dates a page accepts: the ROC calendar's first year up to a day whose next day and Taipei midnight in
UTC still exist (``9999-12-31`` + 1 day, or ``0001-01-01`` at UTC+8 in UTC, overflow)."""


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
    host: str | None = None
    """The request's Host: the page's origin is https://HOST."""

    def arg(self, name: str) -> str | None:
        value = self.args.get(name, "").strip()
        return value or None

    def page(self, title: str, body: Markup, status: int = 200) -> Reply:
        return Reply(status, html.page(title, body, t=self.t, viewer=self.viewer, lang=self.lang, path=self.path))


def texts(args: dict[bytes, list[bytes]]) -> dict[str, str]:
    out = {}
    for name, values in args.items():
        try:
            out[name.decode("utf-8")] = values[0].decode("utf-8") if values else ""
        except UnicodeDecodeError:
            raise Refusal("query-invalid", "the query must be UTF-8") from None
    for name, value in out.items():
        plain(name, "query parameter name")
        plain(value, f"query parameter {name!r}")
    return out


def plain(text: str, what: str) -> str:
    """``text`` unless it holds a control character (:data:`CONTROL`): then ``query-invalid``."""
    if CONTROL.search(text):
        raise Refusal("query-invalid", f"the {what} holds a control character")
    return text


def day_arg(view: View, name: str) -> datetime.date | None:
    text = view.arg(name)
    if text is None:
        return None
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise Refusal("query-invalid", f"{name!r} must be a date YYYY-MM-DD, not {text!r}") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise Refusal("query-invalid", f"{name!r} must be a date from {FIRST_DAY} to {LAST_DAY}, not {text!r}")
    return day


def taipei_midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(0), TAIPEI)


def when(at: datetime.datetime | None) -> str:
    return "" if at is None else at.astimezone(TAIPEI).strftime("%Y-%m-%d %H:%M:%S")

