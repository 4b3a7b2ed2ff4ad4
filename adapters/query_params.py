"""The query strings of the list routes, read strictly: an unknown, repeated or malformed parameter is a
refusal (``query-invalid``, ``limit-invalid``), never silently ignored (a misspelt ``stauts=`` would
otherwise list everything)."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from gateway.errors import Refusal
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
