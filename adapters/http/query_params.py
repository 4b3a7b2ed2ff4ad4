"""The query strings of the list routes, read strictly: an unknown, repeated or malformed parameter is a
refusal (``query-invalid``, ``limit-invalid``), never silently ignored (a misspelt ``stauts=`` would
otherwise list everything). The statement route's query is read here too (:func:`parse_statement_query`)."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from gateway.errors import Refusal
from gateway.statements.lines import Period
from gateway.store import MAX_PAGE, check_limit

DEFAULT_LIMIT = 100
STATUS_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,39}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,512}")


@dataclass(frozen=True)
class ListQuery:
    status: str | None = None
    received_from: datetime.datetime | None = None
    received_to: datetime.datetime | None = None
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT


def _single(args: dict[bytes, list[bytes]], allowed: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, values in args.items():
        try:
            name = raw_name.decode("ascii")
            texts = [v.decode("ascii") for v in values]
        except UnicodeDecodeError:
            raise Refusal("query-invalid", "query parameters must be ASCII") from None
        if name not in allowed:
            raise Refusal("query-invalid", f"unknown query parameter {name!r}; known: {', '.join(sorted(allowed))}")
        if len(texts) != 1:
            raise Refusal("query-invalid", f"the query parameter {name!r} is given {len(texts)} times")
        out[name] = texts[0]
    return out


def _instant(name: str, text: str) -> datetime.datetime:
    try:
        at = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise Refusal("query-invalid", f"{name!r} must be an ISO 8601 date-time with an offset, "
                      f"e.g. 2026-11-27T08:00:00+08:00, not {text!r}") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise Refusal("query-invalid", f"{name!r} must carry a UTC offset (Z or +08:00): {text!r}")
    return at.astimezone(datetime.timezone.utc)


def parse_list_query(args: dict[bytes, list[bytes]], *, with_status: bool = True) -> ListQuery:
    """``args`` is Twisted's ``request.args``. ``from`` is inclusive, ``to`` exclusive."""
    allowed = {"from", "to", "cursor", "limit"} | ({"status"} if with_status else set())
    params = _single(args, allowed)
    status = params.get("status")
    if status is not None and not STATUS_PATTERN.fullmatch(status):
        raise Refusal("query-invalid", f"'status' must be a status name such as 'received', not {status!r}")
    received_from = _instant("from", params["from"]) if "from" in params else None
    received_to = _instant("to", params["to"]) if "to" in params else None
    if received_from is not None and received_to is not None and received_from >= received_to:
        raise Refusal("query-invalid", "'from' must lie before 'to' ('to' is exclusive)")
    cursor = params.get("cursor")
    if cursor is not None and not _CURSOR.fullmatch(cursor):
        raise Refusal("cursor-invalid", "the paging cursor is not one this gateway issued")
    return ListQuery(status, received_from, received_to, cursor, _limit(params))


def _limit(params: dict[str, str]) -> int:
    limit_text = params.get("limit", str(DEFAULT_LIMIT))
    if not (limit_text.isdigit() and len(limit_text) <= 4):
        raise Refusal("limit-invalid", f"'limit' must be a whole number from 1 to {MAX_PAGE}, not {limit_text!r}")
    check_limit(int(limit_text))  # the store's own range, so the two cannot disagree
    return int(limit_text)


def parse_limit(args: dict[bytes, list[bytes]]) -> int:
    """A query string that may hold only ``limit`` (work queues)."""
    return _limit(_single(args, {"limit"}))


STATEMENT_FORMATS = ("csv", "camt053", "pdf")


@dataclass(frozen=True)
class StatementQuery:
    period: Period
    format: str  # one of STATEMENT_FORMATS
    roc_dates: bool = False


def _day(name: str, text: str) -> datetime.date:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise Refusal("query-invalid", f"{name!r} must be a date YYYY-MM-DD (a Taipei date), not {text!r}")
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise Refusal("query-invalid", f"{name!r} is not a calendar date: {text!r}") from None


def parse_statement_query(args: dict[bytes, list[bytes]]) -> StatementQuery:
    """``GET /v1/statements``: ``from`` and ``to`` (Taipei dates, both inclusive, at most MAX_PERIOD_DAYS days
    apart), ``format`` csv, camt053 or pdf, optional ``dates=roc`` (CSV and PDF)."""
    params = _single(args, {"from", "to", "format", "dates"})
    for name in ("from", "to", "format"):
        if name not in params:
            raise Refusal("query-invalid", f"the query parameter {name!r} is required")
    start, end = _day("from", params["from"]), _day("to", params["to"])
    try:
        period = Period(start, end)
    except ValueError as exc:
        raise Refusal("query-invalid", f"the statement period is not acceptable: {exc}") from None
    if params["format"] not in STATEMENT_FORMATS:
        raise Refusal("query-invalid", f"'format' is one of {', '.join(STATEMENT_FORMATS)}, not {params['format']!r}")
    dates = params.get("dates", "iso")
    if dates not in ("iso", "roc"):
        raise Refusal("query-invalid", f"'dates' is iso or roc, not {dates!r}")
    if dates == "roc" and params["format"] == "camt053":
        raise Refusal("query-invalid", "'dates=roc' applies to the CSV and PDF formats only (camt.053 dates are "
                      "ISO 8601)")
    return StatementQuery(period, params["format"], dates == "roc")
