"""The pure deposit notice core (gateway/notices/content.py): the text, escaping, masking, backoff, SMTP answers."""

from __future__ import annotations

import datetime
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.notices.content import (
    Channel,
    DepositNotice,
    NoticeState,
    NoticeTarget,
    Result,
    RetryPolicy,
    after_attempt,
    classify_smtp,
    compose,
    fax_digits,
    format_ntd,
    mask_account,
    message_id,
    outcome_detail,
    roc_date,
)
from gateway.store import AuditEntry, AuditEvent
from gateway.vouchers.model import Notice, NoticeChannel
from gateway.workflow.queue_events import event_of

AT = datetime.datetime(2026, 11, 27, 8, 0, tzinfo=datetime.timezone.utc)


def notice(**changes) -> DepositNotice:
    fields = dict(end_to_end_id="379000001A1150000123R001L0002", voucher_id="379000001A-115-0000123", revision=1,
                  line_number=2, agency="379000001A", target=NoticeTarget(Channel.EMAIL, "payee@example.com.tw"),
                  purpose="資訊設備維護費", payee_name="王小明", amount=1234567, bank_code="012", branch_code="6812",
                  account_number="27480409441741", paid_on=datetime.date(2026, 11, 27), attempts=1, claim="c1")
    fields.update(changes)
    return DepositNotice(**fields)


def test_the_notice_states_amount_account_voucher_and_date_in_traditional_chinese():
    text = compose(notice(), bank_name="台北富邦商業銀行", agency_name="臺北市立動物園")
    assert text.subject == "臺北市政府入戶通知：新臺幣 1,234,567 元已存入您的帳戶"
    for fragment in ("王小明 您好", "新臺幣 1,234,567 元", "民國115年11月27日", "台北富邦商業銀行（012-6812） **********1741",
                     "臺北市立動物園（379000001A）", "資訊設備維護費", "379000001A-115-0000123 第 1 版 第 2 筆",
                     "379000001A1150000123R001L0002"):
        assert fragment in text.plain and fragment in text.html
    assert "27480409441741" not in text.plain + text.html  # the full account never leaves the gateway


def test_payee_and_agency_text_is_escaped_in_the_html_and_kept_as_is_in_the_plain_text():
    hostile = notice(payee_name='<script>alert("x")</script>&', purpose="<b>補助</b>")
    text = compose(hostile)
    assert "<script>" not in text.html and "<b>補助</b>" not in text.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in text.html
    assert '<script>alert("x")</script>&' in text.plain


@given(st.text(min_size=1, max_size=60))
def test_no_payee_name_can_open_a_tag_in_the_html(name):
    text = compose(notice(payee_name=name, purpose=name))
    outside_tags = re.sub(r"<[^>]*>", "", text.html)
    assert "<" not in outside_tags and ">" not in outside_tags


@given(st.integers(min_value=0, max_value=10**15))
def test_amounts_are_whole_dollars_with_separators(amount):
    shown = format_ntd(amount)
    assert int(shown.removeprefix("新臺幣 ").removesuffix(" 元").replace(",", "")) == amount


def test_money_is_never_a_float():
    with pytest.raises(TypeError):
        format_ntd(12.5)
    with pytest.raises(ValueError):
        notice(amount=0)


@pytest.mark.parametrize("account, shown", [("27480409441741", "**********1741"), ("12345", "*2345"),
                                            ("1234", "*234"), ("1", "*")])
def test_accounts_are_masked_to_their_last_four(account, shown):
    assert mask_account(account) == shown


def test_roc_dates_and_fax_numbers():
    assert roc_date(datetime.date(2026, 1, 5)) == "民國115年1月5日"
    assert fax_digits("02-27208889") == "0227208889" and fax_digits("0227208889") == "0227208889"
    assert fax_digits("+886 2 2720 8889") is None
    with pytest.raises(ValueError):
        NoticeTarget(Channel.FAX, "not a number")


def test_targets_come_from_the_voucher_notice():
    assert NoticeTarget.of(Notice(NoticeChannel.POST, "臺北市信義區市府路1號", "110")) == NoticeTarget(
        Channel.POST, "臺北市信義區市府路1號", "110")


def test_the_message_id_is_the_same_on_every_attempt():
    assert message_id("E2E1", "gov.taipei") == message_id("E2E1", "gov.taipei") == "<E2E1.deposit-notice@gov.taipei>"
    assert message_id("E2E1", "gov.taipei") != message_id("E2E2", "gov.taipei")


@pytest.mark.parametrize("code, result", [(250, Result.DELIVERED), (251, Result.DELIVERED), (421, Result.TRANSIENT),
                                          (451, Result.TRANSIENT), (452, Result.TRANSIENT), (550, Result.PERMANENT),
                                          (553, Result.PERMANENT), (554, Result.PERMANENT), (-1, Result.TRANSIENT)])
def test_smtp_answers_are_classified_by_their_first_digit(code, result):
    answer = classify_smtp(code, b"5.1.1 no such user")
    assert answer.result is result and answer.reply.startswith(str(code)) and "no such user" in answer.reply


def test_a_long_server_reply_is_kept_bounded():
    assert len(classify_smtp(550, "x" * 5000).reply) == 500


POLICY = RetryPolicy(first=datetime.timedelta(minutes=1), cap=datetime.timedelta(hours=1), max_attempts=8)


@given(st.integers(min_value=1, max_value=200), st.floats(min_value=0, max_value=1, exclude_max=True))
def test_backoff_doubles_from_the_first_wait_up_to_the_cap_and_jitters_below_it(attempts, jitter):
    ceiling = POLICY.ceiling(attempts)
    assert ceiling.total_seconds() == min(60 * 2 ** (attempts - 1), 3600)
    delay = POLICY.delay(attempts, jitter)
    assert datetime.timedelta(seconds=1) <= delay <= max(ceiling, datetime.timedelta(seconds=1))


def test_a_4xx_is_retried_until_the_last_attempt_then_given_up():
    busy = classify_smtp(451, "try later")
    outcome = after_attempt(3, busy, POLICY, at=AT, jitter=0.5)
    assert outcome.state is NoticeState.PENDING and outcome.next_attempt_at == AT + datetime.timedelta(minutes=2)
    assert outcome.last_error == "451 try later"
    final = after_attempt(8, busy, POLICY, at=AT, jitter=0.5)
    assert final.state is NoticeState.FAILED and final.next_attempt_at is None


def test_a_5xx_bounces_at_once_and_a_2xx_is_sent():
    bounced = after_attempt(1, classify_smtp(550, "no such user"), POLICY, at=AT, jitter=0.1)
    assert (bounced.state, bounced.last_error, bounced.next_attempt_at) == (NoticeState.BOUNCED,
                                                                             "550 no such user", None)
    sent = after_attempt(1, classify_smtp(250, "ok"), POLICY, at=AT, jitter=0.1)
    assert (sent.state, sent.sent_at) == (NoticeState.SENT, AT)


def test_policies_that_make_no_sense_are_refused():
    for bad in (dict(first=datetime.timedelta(0)), dict(cap=datetime.timedelta(seconds=1)), dict(max_attempts=0)):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


def test_only_final_outcomes_reach_the_history_and_never_as_a_voucher_status():
    n = notice()
    assert outcome_detail(n, after_attempt(1, classify_smtp(451, "later"), POLICY, at=AT, jitter=0.2),
                          message_id=None) is None
    outcome = after_attempt(1, classify_smtp(550, "no such user"), POLICY, at=AT, jitter=0.2)
    detail = outcome_detail(n, outcome, message_id="<m>")
    assert detail == {"line": 2, "end_to_end_id": n.end_to_end_id, "channel": "email", "notice_state": "bounced",
                      "attempts": 1, "message_id": "<m>", "reply": "550 no such user"}
    # the event publisher must not read it as the voucher moving (gateway/workflow/queue_events.py)
    entry = AuditEntry(7, AuditEvent(AT, "system:deposit-notices", "notice.bounced", n.subject, None, detail),
                       "0" * 64, "1" * 64)
    assert event_of(entry) is None
