"""Deposit notices (入戶通知): what a payee is told when the bank books a payment, and when to try again.

Pure: no SMTP, no files, no clock. The adapters (``adapters/notices/``: the worker, ``smtp.py``,
``fax.py``, ``letters.py``) claim notices from the store, deliver them and record the outcome this
module decides. Four decisions live here, each a plain function tested on its own:

- :func:`compose`: the notice's Traditional Chinese text, plain and HTML. Everything the payee or the
  agency supplied (name, purpose) is escaped in the HTML; the account is masked to its last four digits
  (the notice may travel unencrypted and be read by anyone at a shared fax); the amount is whole NT$ with
  thousands separators, never a float.
- :class:`RetryPolicy`: exponential backoff with full jitter and a cap, and a maximum number of attempts,
  so a mail server that is down for an hour is not hammered and a notice that can never go stops trying.
- :func:`classify_smtp`: what an SMTP answer means (RFC 5321 §4.2.1): 2xx delivered, 4xx transient
  (try again), 5xx permanent (a bounce, never retried), with the server's reply kept for the operator.
- :func:`after_attempt`: the notice's next state from an attempt's result and the policy.

States (one row per payment line, ``adapters/storage/migrations/v0009_deposit_notices.py``)::

    waiting ──booked──► pending ──2xx / letter printed──► sent
       │                  │ ├──5xx──────────────────────► bounced
       │                  │ └──4xx / no answer, attempts left: pending again at next_attempt_at;
       │                  │                     none left: failed
       └──returned (退匯)──┴──► cancelled   (a payee is never told of money that came back)
"""

from __future__ import annotations

import datetime
import enum
import html
import re
from dataclasses import dataclass

from gateway.vouchers.model import Notice, NoticeChannel


class NoticeState(enum.Enum):
    WAITING = "waiting"  # the line is at the bank, not booked yet
    PENDING = "pending"  # booked: to be sent (again) at next_attempt_at
    SENT = "sent"  # the mail server (or fax spool, or letter batch) took it
    BOUNCED = "bounced"  # the mail server refused it for good (5xx)
    FAILED = "failed"  # given up after the last attempt
    CANCELLED = "cancelled"  # the payment was returned before the notice left

    @property
    def final(self) -> bool:
        return self in (NoticeState.SENT, NoticeState.BOUNCED, NoticeState.FAILED, NoticeState.CANCELLED)


class Channel(enum.Enum):
    EMAIL = "email"
    FAX = "fax"
    POST = "post"


_CHANNEL_OF = {NoticeChannel.EMAIL: Channel.EMAIL, NoticeChannel.FAX: Channel.FAX, NoticeChannel.POST: Channel.POST}


@dataclass(frozen=True)
class NoticeTarget:
    """Where one line's notice goes, copied from the signed voucher's <Notice> when the line is batched."""

    channel: Channel
    address: str  # e-mail address, fax number as written, or the postal address text
    post_code: str | None = None

    def __post_init__(self) -> None:
        if not self.address:
            raise ValueError("a notice needs an address")
        if self.channel is Channel.FAX and fax_digits(self.address) is None:
            raise ValueError(f"not a fax number: {self.address!r}")

    @classmethod
    def of(cls, notice: Notice) -> NoticeTarget:
        return cls(_CHANNEL_OF[notice.channel], notice.address, notice.post_code)


_FAX = re.compile(r"0[0-9]{1,3}-?[0-9]{5,8}")  # schemas/voucher.xsd NoticeType/Fax


def fax_digits(number: str) -> str | None:
    """A fax number as dialled (digits only, ``02-27208889`` → ``0227208889``), or None if it is not one."""
    if _FAX.fullmatch(number) is None:
        return None
    return number.replace("-", "")


@dataclass(frozen=True)
class DepositNotice:
    """One claimed notice with everything its text needs: the row and its payment line."""

    end_to_end_id: str
    voucher_id: str
    revision: int
    line_number: int
    agency: str
    target: NoticeTarget
    purpose: str
    payee_name: str
    amount: int  # whole NT$
    bank_code: str
    branch_code: str
    account_number: str
    paid_on: datetime.date
    attempts: int  # including the attempt now being made
    claim: str  # the lease token the outcome must name
    message_id: str | None = None  # kept from an earlier attempt (a letter batch's file and page)

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount <= 0:
            raise ValueError(f"a notice's amount is a positive whole NT$ amount, not {self.amount!r}")

    @property
    def subject(self) -> str:
        """The audit subject of the revision it belongs to."""
        return f"{self.voucher_id}#{self.revision}"


def message_id(end_to_end_id: str, domain: str) -> str:
    """The notice's Message-ID: the same on every attempt, so a copy sent again after a crash (the server
    took it, the gateway died before recording that) is recognisable as the same notice."""
    return f"<{end_to_end_id}.deposit-notice@{domain}>"


def format_ntd(amount: int) -> str:
    """``1234567`` → ``新臺幣 1,234,567 元``: whole dollars with separators (no float ever touches money)."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError("money is an int")
    return f"新臺幣 {amount:,} 元"


def mask_account(account: str) -> str:
    """All but the last four characters as ``*``: enough for the payee to recognise the account, too little
    for whoever else reads a fax tray or an intercepted e-mail to use it."""
    keep = 4 if len(account) > 4 else max(len(account) - 1, 0)
    return "*" * (len(account) - keep) + account[len(account) - keep:]


def roc_date(day: datetime.date) -> str:
    """A date as Taiwan's offices write it: ``民國115年11月27日`` (ROC year = Gregorian − 1911)."""
    return f"民國{day.year - 1911}年{day.month}月{day.day}日"


@dataclass(frozen=True)
class NoticeText:
    subject: str
    plain: str
    html: str
    lines: tuple[tuple[str, str], ...]  # (label, value) pairs, for a letter or fax page


SENDER = "臺北市政府財政局"
"""Who sends the notice on the city's behalf (the treasury's administrator)."""


def notice_fields(notice: DepositNotice, *, bank_name: str | None, agency_name: str | None) -> tuple[tuple[str, str], ...]:
    """The facts a notice states, labelled, in the order every channel prints them."""
    bank = f"{bank_name or '銀行'}（{notice.bank_code}-{notice.branch_code}）"
    return (
        ("受款人", notice.payee_name),
        ("入帳日期", roc_date(notice.paid_on)),
        ("金額", format_ntd(notice.amount)),
        ("入帳帳戶", f"{bank} {mask_account(notice.account_number)}"),
        ("付款機關", f"{agency_name}（{notice.agency}）" if agency_name else notice.agency),
        ("用途", notice.purpose),
        ("付款憑單", f"{notice.voucher_id} 第 {notice.revision} 版 第 {notice.line_number} 筆"),
        ("交易序號", notice.end_to_end_id),
    )


def compose(notice: DepositNotice, *, bank_name: str | None = None, agency_name: str | None = None) -> NoticeText:
    """The notice in Traditional Chinese: a subject, a plain-text body and an HTML body saying the same."""
    fields = notice_fields(notice, bank_name=bank_name, agency_name=agency_name)
    subject = f"臺北市政府入戶通知：{format_ntd(notice.amount)}已存入您的帳戶"
    opening = f"臺北市政府入戶通知\n\n{notice.payee_name} 您好：\n\n臺北市政府已將下列款項撥入您的帳戶，請查收。\n"
    closing = ("\n本通知由系統自動發送，請勿直接回覆。如有疑問，請洽付款機關。\n"
               f"{SENDER} 市庫集中支付系統")
    width = max(len(label) for label, _ in fields)
    plain = opening + "\n" + "".join(f"{label.ljust(width, '　')}：{value}\n" for label, value in fields) + closing + "\n"
    e = html.escape
    rows = "".join(f"<tr><th style=\"text-align:left;padding-right:1em\">{e(label)}</th><td>{e(value)}</td></tr>"
                   for label, value in fields)
    body = ("<!DOCTYPE html><html lang=\"zh-Hant-TW\"><head><meta charset=\"utf-8\">"
            f"<title>{e(subject)}</title></head><body>"
            "<h1>臺北市政府入戶通知</h1>"
            f"<p>{e(notice.payee_name)} 您好：</p><p>臺北市政府已將下列款項撥入您的帳戶，請查收。</p>"
            f"<table>{rows}</table>"
            "<p>本通知由系統自動發送，請勿直接回覆。如有疑問，請洽付款機關。</p>"
            f"<p>{e(SENDER)} 市庫集中支付系統</p></body></html>")
    return NoticeText(subject, plain, body, fields)


# --- trying again ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """When to try a notice again. The n-th retry waits a random time in [0, min(cap, first × 2^(n-1))]
    ("full jitter"): many notices failing at once (the mail server restarted) spread out instead of coming
    back together. After ``max_attempts`` attempts the notice is given up (``failed``)."""

    first: datetime.timedelta = datetime.timedelta(minutes=1)
    cap: datetime.timedelta = datetime.timedelta(hours=1)
    max_attempts: int = 8
    lease: datetime.timedelta = datetime.timedelta(minutes=10)
    """How long a claimed notice is the claimer's; after that, another worker may take it (the first died)."""

    def __post_init__(self) -> None:
        if self.first <= datetime.timedelta(0) or self.cap < self.first:
            raise ValueError("the first delay is positive and the cap not below it")
        if self.max_attempts < 1:
            raise ValueError("at least one attempt")
        if self.lease <= datetime.timedelta(0):
            raise ValueError("the lease is positive")

    def ceiling(self, attempts: int) -> datetime.timedelta:
        """The longest wait after the ``attempts``-th failed attempt (before jitter)."""
        if attempts < 1:
            raise ValueError("attempts start at 1")
        doubled = self.first * (2 ** min(attempts - 1, 40))
        return min(doubled, self.cap)

    def delay(self, attempts: int, jitter: float) -> datetime.timedelta:
        """The wait after the ``attempts``-th failed attempt, ``jitter`` drawn uniformly from [0, 1)."""
        if not 0.0 <= jitter < 1.0:
            raise ValueError("jitter is in [0, 1)")
        # at least a second, so a zero draw never spins a notice straight back into the next poll
        return max(self.ceiling(attempts) * jitter, datetime.timedelta(seconds=1))


class Result(enum.Enum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"  # try again
    PERMANENT = "permanent"  # bounced: never again


@dataclass(frozen=True)
class AttemptResult:
    result: Result
    reply: str  # the server's reply, or what went wrong, for the operator (bounded)
    code: int | None = None  # the SMTP reply code when there was one

    def __post_init__(self) -> None:
        object.__setattr__(self, "reply", _bounded(self.reply))


def _bounded(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify_smtp(code: int, reply: str | bytes) -> AttemptResult:
    """An SMTP reply code and text as an attempt's result: 2xx delivered, 4xx transient, 5xx permanent.
    Anything else (a server speaking nonsense) is transient: a person is told if it never gets better."""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    text = f"{code} {reply}".strip()
    if 200 <= code < 300:
        return AttemptResult(Result.DELIVERED, text, code)
    if 500 <= code < 600:
        return AttemptResult(Result.PERMANENT, text, code)
    return AttemptResult(Result.TRANSIENT, text, code)


@dataclass(frozen=True)
class Outcome:
    """What to store after one attempt: the new state, when to try next (pending only), the error kept."""

    state: NoticeState
    next_attempt_at: datetime.datetime | None
    last_error: str | None
    sent_at: datetime.datetime | None


def after_attempt(attempts: int, result: AttemptResult, policy: RetryPolicy, *, at: datetime.datetime,
                  jitter: float) -> Outcome:
    """The notice's state after its ``attempts``-th attempt ended with ``result`` at ``at``."""
    if result.result is Result.DELIVERED:
        return Outcome(NoticeState.SENT, None, None, at)
    if result.result is Result.PERMANENT:
        return Outcome(NoticeState.BOUNCED, None, result.reply, None)
    if attempts >= policy.max_attempts:
        return Outcome(NoticeState.FAILED, None, result.reply, None)
    return Outcome(NoticeState.PENDING, at + policy.delay(attempts, jitter), result.reply, None)


NOTICE_ACTOR = "system:deposit-notices"
"""How the audit log names the notice worker."""


def outcome_detail(notice: DepositNotice, outcome: Outcome, *, message_id: str | None) -> dict | None:
    """The audit entry's detail for a final outcome (sent, bounced, failed), None for a retry: the voucher's
    history shows what the payee was told and when, not every transient hiccup (those are in the row).
    No ``status`` key: that would read as the voucher's own status (gateway/workflow/queue_events.py)."""
    if not outcome.state.final:
        return None
    detail = {"line": notice.line_number, "end_to_end_id": notice.end_to_end_id,
              "channel": notice.target.channel.value, "notice_state": outcome.state.value,
              "attempts": notice.attempts}
    if message_id:
        detail["message_id"] = message_id
    if outcome.last_error:
        detail["reply"] = outcome.last_error
    return detail
