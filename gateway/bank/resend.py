"""When a sent transfer message is sent again by itself, and what the audit log says about it.

A transfer message the broker confirmed can still go unanswered: the bank lost it, or its reports were lost
on the way back. The bank answers a MsgId it already has with its earlier reports and books nothing twice
(the same signed bytes carry the same MsgId and EndToEndIds), so sending the stored message again is always
safe. The worker does it for every message whose lines are not all final more than ``resend_after`` after
it was last sent, up to ``max_resends`` times (counted in the message's row, operators' re-sends included).
After that only an operator re-sends it (``vgw bank resend``), alerted by the unconfirmed-lines flag.

Pure: the candidates and the time come in, the audit events go out; adapters/bank/worker.py does the I/O.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from gateway.bank.store import UnansweredMessage
from gateway.store import AuditEvent

RESEND_ACTOR = "system:bank-exchange"
RESEND_ACTION = "bank.resend"


@dataclass(frozen=True)
class Resend:
    """One message to make unsent again, with its audit event; ``last`` when it uses the last automatic try."""

    message_id: str
    event: AuditEvent
    last: bool


def plan_resends(candidates: list[UnansweredMessage], *, at: datetime.datetime, after: datetime.timedelta,
                 max_resends: int) -> list[Resend]:
    """The re-sends due among ``candidates`` (messages with open lines): those last sent more than ``after``
    ago and re-sent fewer than ``max_resends`` times so far, each with the audit event recording it as
    attempt ``resends + 1``. The store query already selects so; what it returned otherwise is left out."""
    if after <= datetime.timedelta(0):
        raise ValueError("a re-send waits a positive time")
    reason = f"no final answer after {after.total_seconds():g} s"
    due = []
    for message in candidates:
        attempt = message.resends + 1
        if attempt > max_resends or message.sent_at >= at - after:
            continue
        due.append(Resend(message.message_id, AuditEvent(
            at, RESEND_ACTOR, RESEND_ACTION, f"message:{message.message_id}", message.sha256,
            {"reason": reason, "attempt": attempt, "open_lines": message.open_lines,
             "lines": message.payment_count}), attempt == max_resends))
    return due
