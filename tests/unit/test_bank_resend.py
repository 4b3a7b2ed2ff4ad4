"""Which unanswered transfer messages are sent again by themselves, what their audit entry says, and the
worker settings and ``vgw bank run`` options that govern it."""

from __future__ import annotations

import argparse
import datetime
import hashlib

import pytest

from adapters.bank.worker import BankWorkerSettings
from adapters.cli.bank import register, worker_settings
from adapters.cli.main import CommandRegistry
from gateway.bank.resend import RESEND_ACTION, RESEND_ACTOR, plan_resends
from gateway.bank.store import UnansweredMessage

NOW = datetime.datetime(2026, 3, 12, 9, 0, tzinfo=datetime.timezone.utc)
HALF_HOUR = datetime.timedelta(minutes=30)


def unanswered(n: int, *, sent_ago: datetime.timedelta = datetime.timedelta(hours=1), resends: int = 0,
               open_lines: int = 3, lines: int = 10) -> UnansweredMessage:
    return UnansweredMessage(f"VGW{n:06d}", hashlib.sha256(str(n).encode()).hexdigest(), NOW - sent_ago, lines,
                             open_lines, resends)


def test_a_due_message_is_resent_as_its_next_attempt_with_an_audit_entry_saying_why():
    message = unanswered(1, resends=2, open_lines=1, lines=25)
    [resend] = plan_resends([message], at=NOW, after=HALF_HOUR, max_resends=5)
    assert resend.message_id == "VGW000001" and not resend.last
    event = resend.event
    assert (event.at, event.actor, event.action, event.subject, event.document_sha256) == (
        NOW, RESEND_ACTOR, RESEND_ACTION, "message:VGW000001", message.sha256)
    assert (RESEND_ACTOR, RESEND_ACTION) == ("system:bank-exchange", "bank.resend")
    assert event.detail == {"reason": "no final answer after 1800 s", "attempt": 3, "open_lines": 1, "lines": 25}


def test_messages_at_the_cap_or_sent_too_recently_are_left_out_and_order_is_kept():
    candidates = [unanswered(1, resends=5), unanswered(2), unanswered(3, sent_ago=HALF_HOUR),
                  unanswered(4, sent_ago=HALF_HOUR + datetime.timedelta(seconds=1), resends=4)]
    due = plan_resends(candidates, at=NOW, after=HALF_HOUR, max_resends=5)
    assert [(r.message_id, r.event.detail["attempt"], r.last) for r in due] == [
        ("VGW000002", 1, False), ("VGW000004", 5, True)]


def test_a_resend_waits_a_positive_time():
    with pytest.raises(ValueError, match="positive"):
        plan_resends([unanswered(1)], at=NOW, after=datetime.timedelta(0), max_resends=5)


def test_an_unanswered_message_has_open_lines_and_no_more_than_it_carries():
    with pytest.raises(ValueError, match="open lines"):
        unanswered(1, open_lines=0)
    with pytest.raises(ValueError, match="open lines"):
        unanswered(1, open_lines=11, lines=10)


@pytest.mark.parametrize("after, cap, resending", [
    (HALF_HOUR, 5, True), (None, 5, False), (datetime.timedelta(0), 5, False), (HALF_HOUR, 0, False)])
def test_resending_is_on_with_a_positive_interval_and_cap(after, cap, resending):
    assert BankWorkerSettings(resend_after=after, max_resends=cap).resending is resending


def test_worker_settings_refuse_a_negative_interval_or_cap():
    with pytest.raises(ValueError):
        BankWorkerSettings(resend_after=-HALF_HOUR)
    with pytest.raises(ValueError):
        BankWorkerSettings(max_resends=-1)


def parse_bank_run(*options: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vgw")
    register(CommandRegistry(parser))
    return parser.parse_args(["bank", "run", "--store", "sqlite:///x.db", "--amqp", "amqp://localhost",
                              "--pki", "pki", *options])


def test_vgw_bank_run_resends_after_30_minutes_up_to_5_times_by_default():
    settings = worker_settings(parse_bank_run())
    assert (settings.resend_after, settings.max_resends, settings.resending) == (HALF_HOUR, 5, True)
    assert settings == BankWorkerSettings()


def test_vgw_bank_run_resend_options_set_and_disable_it():
    settings = worker_settings(parse_bank_run("--resend-seconds", "90", "--resend-limit", "2"))
    assert (settings.resend_after, settings.max_resends) == (datetime.timedelta(seconds=90), 2)
    assert not worker_settings(parse_bank_run("--resend-seconds", "0")).resending


def test_vgw_bank_run_refuses_a_negative_resend_interval(capsys):
    with pytest.raises(SystemExit):
        parse_bank_run("--resend-seconds", "-1")
    assert "-1 is negative" in capsys.readouterr().err
