"""What every console page handler works with: the :class:`View` (who, which language, the query or posted
form as text) and the :class:`Reply` it returns, plus the small readers of dates and times pages share."""

from __future__ import annotations

import dataclasses
import datetime

from gateway.business_time import TAIPEI
from gateway.errors import Refusal

from . import html
from .html import Markup
from .identity import Viewer

PAGE = 50


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


def texts(args: dict[bytes, list[bytes]]) -> dict[str, str]:
    out = {}
    for name, values in args.items():
        try:
            out[name.decode("utf-8")] = values[0].decode("utf-8") if values else ""
        except UnicodeDecodeError:
            raise Refusal("query-invalid", "the query must be UTF-8") from None
    return out


def day_arg(view: View, name: str) -> datetime.date | None:
    text = view.arg(name)
    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise Refusal("query-invalid", f"{name!r} must be a date YYYY-MM-DD, not {text!r}") from None


def taipei_midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(0), TAIPEI)


def when(at: datetime.datetime | None) -> str:
    return "" if at is None else at.astimezone(TAIPEI).strftime("%Y-%m-%d %H:%M:%S")

