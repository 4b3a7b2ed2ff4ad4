"""How a voucher's status page (``GET /v1/vouchers/{id}``, adapters/services/intake.py) shows deposit notices.

Each payment line carries ``notice``: its channel, where the notice stands, attempts, when it was sent and
the last error (a bounce's reply), or null when the voucher line asked for none. The address itself is left
out: the agency wrote it, and a status page is no place to echo payees' e-mail addresses and fax numbers.
The history (read from the audit log) shows ``notice.sent`` / ``notice.bounced`` / ``notice.failed`` with
the line, the channel and the result.
"""

from __future__ import annotations

from gateway.notices.store import NoticeRow
from gateway.store import utc_text


def notice_item(row: NoticeRow) -> dict:
    return {"channel": row.channel.value, "state": row.state.value, "attempts": row.attempts,
            "sent_at": utc_text(row.sent_at) if row.sent_at else None,
            "next_attempt_at": utc_text(row.next_attempt_at) if row.next_attempt_at else None,
            "last_error": row.last_error}


def with_notices(payments: list[dict], notices: list[NoticeRow]) -> list[dict]:
    """``payments`` (payment_item dicts) each with its line's ``notice`` (or None)."""
    by_line = {(n.revision, n.line_number): notice_item(n) for n in notices}
    for item in payments:
        item["notice"] = by_line.get((item["revision"], item["line"]))
    return payments


def notice_history(detail: dict) -> dict:
    """The fields a notice's audit entry adds to its history item."""
    return {"result": detail["notice_state"], "line": detail.get("line"), "channel": detail.get("channel"),
            "reply": detail.get("reply")}
