"""Deposit notices (入戶通知) end to end on both stores: lines batched and booked by the simulated bank, notices
claimed by the worker and delivered to a real SMTP server on loopback (aiosmtpd, STARTTLS), a fax spool
folder, and a PDF of letters read back with pypdf."""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import threading
from pathlib import Path

import pypdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from adapters.bank.exchange import BankBatcher, ReportIntake
from adapters.notices.fax import FaxByEmail, FaxSpool
from adapters.notices.letters import WINDOW, WINDOW_INSET, render_letters, wrap, write_letters
from adapters.notices.smtp import SmtpSender, SmtpSettings
from adapters.notices.worker import EmailChannel, NoticeWorker, NoticeWorkerSettings
from adapters.statements.cjk_font import cjk_font_name
from gateway.bank.pain001 import TAIPEI_TREASURY
from gateway.bank.payments import LineState
from gateway.bank.settlement import SigningIdentity
from gateway.notices.content import Channel, DepositNotice, NoticeState, NoticeTarget, RetryPolicy, compose
from gateway.vouchers.model import Notice, NoticeChannel
from simulators.bank import SimulatedBank
from simulators.bank_day import day_of_vouchers, place_accepted
from simulators.pki.layout import load_cert, load_key

from .smtp_server import smtp_server
from .test_store_contract import backend, pg_database, store  # noqa: F401
from .twisted_reactor import call, reactor_thread  # noqa: F401

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
A, B = "379000001A", "379000002A"
POLICY = RetryPolicy(first=datetime.timedelta(seconds=30), cap=datetime.timedelta(minutes=10), max_attempts=3)


def with_notices(vouchers, seed: int = 0):
    """Every line's <Notice> by its place: e-mail, fax, post, none, in turn; e-mail addresses unique."""
    out = []
    for v_index, voucher in enumerate(vouchers):
        lines = []
        for line in voucher.lines:
            kind = (v_index + line.number) % 4
            notice = (Notice(NoticeChannel.EMAIL, f"payee{seed}-{v_index}-{line.number}@example.com.tw"),
                      Notice(NoticeChannel.FAX, f"02-2720{v_index:02d}{line.number:02d}"),
                      Notice(NoticeChannel.POST, f"臺北市信義區市府路{line.number}號", "110204"), None)[kind]
            lines.append(line._replace(notice=notice))
        out.append(type(voucher)(**{**voucher.__dict__, "lines": tuple(lines)}))
    return out


def book(store, pki, vouchers, *, return_rate: float = 0.0, twice: bool = False):
    """Batch the vouchers, have the simulated bank answer every transfer message, apply its reports (twice
    over when ``twice``: the booking reported again)."""
    manifest = pki.manifest
    gateway_cert, bank_cert = load_cert(Path(manifest["gateway"]["cert"])), load_cert(Path(manifest["bank"]["cert"]))
    place_accepted(store, vouchers, at=NOW)
    signer = SigningIdentity(load_key(Path(manifest["gateway"]["key"])), gateway_cert, TAIPEI_TREASURY)
    BankBatcher(store, signer, clock=lambda: NOW).batch_all()
    bank = SimulatedBank(gateway_cert, load_key(Path(manifest["bank"]["key"])), bank_cert, lambda: NOW, seed=5,
                         return_rate=return_rate)
    intake = ReportIntake(store, bank_cert, treasury_account=TAIPEI_TREASURY.account_number, clock=lambda: NOW)
    for message in store.unsent_messages():
        reports = [report for _, report in bank.receive(message.body)]
        for report in reports + (reports if twice else []):
            assert intake.handle(report) == "ack"
        store.mark_sent(message.message_id, NOW)


def day(n: int, seed: int, agencies=(A, B)):
    return with_notices(day_of_vouchers(n, agencies=list(agencies), today=NOW.date(), seed=seed), seed)


def rows_of(store, vouchers):
    return {r.end_to_end_id: r for v in vouchers for r in store.notices_of(v.voucher_id, v.revision)}


class Clock:
    def __init__(self, at: datetime.datetime) -> None:
        self.at = at

    def __call__(self) -> datetime.datetime:
        return self.at


def worker(store, reactor, port, ca, *, clock, fax=None, registry=None, require_tls=False):
    sender = SmtpSender(SmtpSettings("127.0.0.1", port, sender="no-reply@gov.taipei", ca=ca, timeout=10,
                                     require_tls=require_tls), reactor=reactor)
    channels = {Channel.EMAIL: EmailChannel(sender, clock=clock),
                Channel.FAX: fax or FaxByEmail(sender, font=cjk_font_name, clock=clock)}
    return NoticeWorker(store, channels, settings=NoticeWorkerSettings(policy=POLICY, concurrency=3),
                        reactor=reactor, clock=clock, registry=registry, jitter=lambda: 0.5)


# --- the outbox ------------------------------------------------------------------------------------------------


def test_each_booked_line_that_asked_gets_one_notice_even_when_the_booking_is_reported_twice(store, pki):
    vouchers = day(12, seed=1)
    book(store, pki, vouchers, twice=True)
    rows = rows_of(store, vouchers)
    asked = {(v.voucher_id, line.number): line.notice for v in vouchers for line in v.lines}
    assert len(rows) == sum(1 for n in asked.values() if n is not None) > 0
    for row in rows.values():
        notice = asked[(row.voucher_id, row.line_number)]
        assert (row.channel.value, row.address) == (notice.channel.value.lower(), notice.address)
        assert row.state is NoticeState.PENDING and row.attempts == 0 and row.booked_at == NOW
    # the database backs it: a second notice for a line cannot be stored whatever the code does
    first = next(iter(rows.values()))
    with pytest.raises(store.unique_violation):
        with store._plain_tx() as conn:
            conn.execute(store._sql("INSERT INTO deposit_notices (end_to_end_id, channel, address, purpose, state, "
                                    "changed_at) SELECT end_to_end_id, channel, address, purpose, state, changed_at "
                                    "FROM deposit_notices WHERE end_to_end_id = ?"), (first.end_to_end_id,))


def test_a_line_returned_before_its_notice_left_is_never_told(store, pki):
    vouchers = day(8, seed=2)
    book(store, pki, vouchers, return_rate=1.0)
    rows = rows_of(store, vouchers)
    assert rows and {r.state for r in rows.values()} == {NoticeState.CANCELLED}
    assert store.claim_notices(NOW + datetime.timedelta(days=1), lease=POLICY.lease,
                               channels=tuple(Channel)) == []


def return_line(store, end_to_end_id: str, at: datetime.datetime) -> None:
    """The bank returns (退匯) a paid line, as a report's booking does: the payment and its notice together."""
    from gateway.bank.store import LineChange
    with store._plain_tx() as conn:
        conn.execute(store._sql("UPDATE payments SET state = 'returned' WHERE end_to_end_id = ?"), (end_to_end_id,))
        store._book_notices(conn, [LineChange(end_to_end_id, LineState.PAID, LineState.RETURNED, None)],
                            store._time_param(at))


@pytest.mark.parametrize("outcome_state", [NoticeState.PENDING, NoticeState.FAILED])
def test_a_line_returned_while_its_notice_is_in_flight_is_never_told_after_a_retry(store, pki, outcome_state):
    from gateway.notices.content import Outcome
    vouchers = day(6, seed=14)
    book(store, pki, vouchers)
    at = NOW + datetime.timedelta(minutes=1)
    [notice, *others] = store.claim_notices(at, lease=POLICY.lease, limit=100)
    return_line(store, notice.end_to_end_id, at + datetime.timedelta(seconds=5))  # inside the lease
    retry = Outcome(outcome_state, at + datetime.timedelta(seconds=30) if outcome_state is NoticeState.PENDING
                    else None, "451 4.7.1 greylisted", None)
    assert store.record_notice_outcome(notice, retry, message_id=None, event=None) is True
    assert rows_of(store, vouchers)[notice.end_to_end_id].state is NoticeState.CANCELLED
    later = at + POLICY.lease + datetime.timedelta(days=1)
    assert notice.end_to_end_id not in {n.end_to_end_id for n in store.claim_notices(
        later, lease=POLICY.lease, limit=1000, channels=tuple(Channel))}


def test_a_mail_the_server_accepted_is_recorded_sent_even_if_the_line_was_returned_meanwhile(store, pki):
    from gateway.notices.content import Outcome
    vouchers = day(6, seed=15)
    book(store, pki, vouchers)
    at = NOW + datetime.timedelta(minutes=1)
    [notice, *_] = store.claim_notices(at, lease=POLICY.lease, limit=100)
    return_line(store, notice.end_to_end_id, at)
    sent = Outcome(NoticeState.SENT, None, None, at + datetime.timedelta(seconds=1))
    assert store.record_notice_outcome(notice, sent, message_id="<m>", event=None) is True
    assert rows_of(store, vouchers)[notice.end_to_end_id].state is NoticeState.SENT  # the truth: it did leave


def test_a_returned_payments_notice_is_never_claimed_even_if_its_row_was_not_cancelled(store, pki):
    vouchers = day(6, seed=16)
    book(store, pki, vouchers)
    row = next(r for r in rows_of(store, vouchers).values() if r.channel is Channel.EMAIL)
    with store._plain_tx() as conn:  # the payment alone moved (no cancel): the claim checks it itself
        conn.execute(store._sql("UPDATE payments SET state = 'returned' WHERE end_to_end_id = ?"), (row.end_to_end_id,))
    claimed = store.claim_notices(NOW + datetime.timedelta(minutes=1), lease=POLICY.lease, limit=1000,
                                  channels=tuple(Channel))
    assert claimed and row.end_to_end_id not in {n.end_to_end_id for n in claimed}


def test_two_workers_never_claim_the_same_notice_and_a_dead_workers_lease_runs_out(store, pki):
    vouchers = day(40, seed=3)
    book(store, pki, vouchers)
    due = {r.end_to_end_id for r in rows_of(store, vouchers).values() if r.channel is not Channel.POST}
    later = NOW + datetime.timedelta(minutes=1)
    taken: list[list] = [[], []]

    def claim(i):
        while batch := store.claim_notices(later, lease=POLICY.lease, limit=3):
            taken[i] += batch
    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ids = [n.end_to_end_id for batch in taken for n in batch]
    assert sorted(ids) == sorted(due)  # each exactly once
    # both workers died: after the lease the notices are claimed again, one attempt more, and the dead
    # claim can no longer record anything
    stale = taken[0][0] if taken[0] else taken[1][0]
    assert store.claim_notices(later + datetime.timedelta(seconds=1), lease=POLICY.lease, limit=1000) == []
    again = store.claim_notices(later + POLICY.lease + datetime.timedelta(seconds=1), lease=POLICY.lease, limit=1000)
    assert {n.end_to_end_id for n in again} == due and {n.attempts for n in again} == {2}
    from gateway.notices.content import Outcome
    sent = Outcome(NoticeState.SENT, None, None, later)
    assert store.record_notice_outcome(stale, sent, message_id="<x>", event=None) is False


# --- e-mail over a real SMTP server --------------------------------------------------------------------------


def test_email_notices_arrive_once_over_starttls_in_chinese_with_both_parts(store, pki, reactor_thread, tmp_path):
    vouchers = day(10, seed=4)
    book(store, pki, vouchers)
    rows = rows_of(store, vouchers)
    emails = {r.address: r for r in rows.values() if r.channel is Channel.EMAIL}
    registry = CollectorRegistry()
    with smtp_server(tmp_path) as (mailbox, port, ca):
        w = worker(store, reactor_thread, port, ca, clock=Clock(NOW + datetime.timedelta(minutes=1)),
                   registry=registry)
        call(reactor_thread, w.run_once)
        assert call(reactor_thread, w.run_once) == 0  # nothing due any more: nothing sent twice
    by_address = {d.recipients[0]: d for d in mailbox.delivered}
    assert set(emails) <= set(by_address) and len(mailbox.delivered) == len(rows) - sum(
        r.channel is Channel.POST for r in rows.values())
    for address, row in emails.items():
        delivered = by_address[address]
        assert delivered.tls and delivered.mail_from == "no-reply@gov.taipei"
        message = delivered.message
        assert message["Subject"].startswith("臺北市政府入戶通知：新臺幣 ")
        assert message["From"].addresses[0].display_name == "臺北市政府財政局"
        assert message["To"] == address
        assert message["Message-ID"] == f"<{row.end_to_end_id}.deposit-notice@gov.taipei>"
        assert message.get_content_type() == "multipart/alternative"
        plain = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        line = next(line for v in vouchers if v.voucher_id == row.voucher_id for line in v.lines
                    if line.number == row.line_number)
        for text in (plain, html):
            assert f"新臺幣 {line.amount:,} 元" in text and row.voucher_id in text
            assert line.account_number[-4:] in text and line.account_number not in text
        assert line.payee_name in plain
    after = rows_of(store, vouchers)
    assert all(after[r.end_to_end_id].state is NoticeState.SENT and after[r.end_to_end_id].attempts == 1
               for r in emails.values())
    history = [e.event for v in vouchers for e in store.history(f"{v.voucher_id}#{v.revision}")
               if e.event.action.startswith("notice.")]
    assert sorted(e.detail["end_to_end_id"] for e in history) == sorted(
        r.end_to_end_id for r in rows.values() if r.channel is not Channel.POST)
    assert registry.get_sample_value("vgw_deposit_notices_total", {"channel": "email", "outcome": "sent"}) == len(emails)


def test_a_4xx_is_tried_again_after_its_backoff_and_delivered_once(store, pki, reactor_thread, tmp_path):
    vouchers = day(6, seed=5)
    book(store, pki, vouchers)
    row = next(r for r in rows_of(store, vouchers).values() if r.channel is Channel.EMAIL)
    clock = Clock(NOW + datetime.timedelta(minutes=1))
    with smtp_server(tmp_path) as (mailbox, port, ca):
        mailbox.script[row.address] = ["451 4.3.0 mailbox busy, try later"]
        w = worker(store, reactor_thread, port, ca, clock=clock)
        call(reactor_thread, w.run_once)
        waiting = rows_of(store, vouchers)[row.end_to_end_id]
        assert waiting.state is NoticeState.PENDING and waiting.attempts == 1
        assert waiting.last_error == "451 4.3.0 mailbox busy, try later"
        assert waiting.next_attempt_at == clock.at + datetime.timedelta(seconds=15)  # 30 s ceiling × jitter 0.5
        assert mailbox.to(row.address) == []
        call(reactor_thread, w.run_once)  # not due yet
        assert mailbox.tried.count(row.address) == 1
        clock.at += datetime.timedelta(seconds=16)
        call(reactor_thread, w.run_once)
    assert len(mailbox.to(row.address)) == 1 and mailbox.tried.count(row.address) == 2
    done = rows_of(store, vouchers)[row.end_to_end_id]
    assert (done.state, done.attempts, done.last_error) == (NoticeState.SENT, 2, None)


class Outage:
    """The store through a database outage: the first ``failures`` outcome records are refused (StoreError),
    or every one when ``failures`` is None; everything else goes to the real store."""

    def __init__(self, store, failures: int | None) -> None:
        self.store, self.failures, self.refused = store, failures, 0

    def __getattr__(self, name):
        return getattr(self.store, name)

    def record_notice_outcome(self, *args, **kwargs):
        if self.failures is None or self.refused < self.failures:
            self.refused += 1
            from gateway.store import StoreError
            raise StoreError("postgresql could not record the notice: the server closed the connection")
        return self.store.record_notice_outcome(*args, **kwargs)


def outage_worker(store, reactor, port, ca, *, clock, registry, policy=POLICY, record_margin=1.0):
    sender = SmtpSender(SmtpSettings("127.0.0.1", port, sender="no-reply@gov.taipei", ca=ca, timeout=10), reactor=reactor)
    return NoticeWorker(store, {Channel.EMAIL: EmailChannel(sender, clock=clock)}, settings=NoticeWorkerSettings(
        policy=policy, concurrency=3, record_retry_first=0.2, record_margin=record_margin), reactor=reactor,
        clock=clock, registry=registry, jitter=lambda: 0.5)


def test_an_outcome_the_store_refuses_for_a_moment_is_recorded_once_it_is_back_and_never_sent_twice(
        store, pki, reactor_thread, tmp_path):
    vouchers = day(6, seed=17)
    book(store, pki, vouchers)
    emails = [r for r in rows_of(store, vouchers).values() if r.channel is Channel.EMAIL]
    clock, registry = Clock(NOW + datetime.timedelta(minutes=1)), CollectorRegistry()
    outage = Outage(store, failures=2 * len(emails))
    with smtp_server(tmp_path) as (mailbox, port, ca):
        call(reactor_thread, outage_worker(outage, reactor_thread, port, ca, clock=clock, registry=registry).run_once)
        assert outage.refused == 2 * len(emails)
        # the lease runs out: nothing is left to claim, nothing goes twice
        clock.at += POLICY.lease + datetime.timedelta(seconds=1)
        call(reactor_thread, worker(store, reactor_thread, port, ca, clock=clock).run_once)
    assert emails and all(len(mailbox.to(r.address)) == 1 for r in emails)
    assert {rows_of(store, vouchers)[r.end_to_end_id].state for r in emails} == {NoticeState.SENT}
    assert registry.get_sample_value("vgw_deposit_notice_record_failures_total", {"channel": "email"}) == 2 * len(emails)
    assert registry.get_sample_value("vgw_deposit_notice_unrecorded_total", {"channel": "email"}) is None


def test_an_outcome_never_recorded_is_given_up_before_the_lease_runs_out_and_handled(store, pki, reactor_thread,
                                                                                      tmp_path):
    from twisted.logger import globalLogPublisher
    vouchers = day(6, seed=18)
    book(store, pki, vouchers)
    emails = [r for r in rows_of(store, vouchers).values() if r.channel is Channel.EMAIL]
    clock, registry = Clock(NOW + datetime.timedelta(minutes=1)), CollectorRegistry()
    # A minute's lease whose last 50 s are the margin: the worker stops retrying 10 s after its claim, time
    # enough for the sends and several refused records however slow the machine, and long before the lease.
    lease, margin = datetime.timedelta(seconds=60), 50.0
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        with smtp_server(tmp_path) as (mailbox, port, ca):
            w = outage_worker(Outage(store, failures=None), reactor_thread, port, ca, clock=clock, registry=registry,
                              policy=RetryPolicy(first=POLICY.first, cap=POLICY.cap, max_attempts=3, lease=lease),
                              record_margin=margin)
            started = reactor_thread.seconds()
            assert call(reactor_thread, w.run_once) == len(emails)  # fires: no error escapes
            took = reactor_thread.seconds() - started
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert took < lease.total_seconds() - margin / 2  # given up at the margin, well before the lease ran out
    given_up = registry.get_sample_value("vgw_deposit_notice_unrecorded_total", {"channel": "email"})
    assert given_up == len(emails) > 0
    assert registry.get_sample_value("vgw_deposit_notice_record_failures_total", {"channel": "email"}) > len(emails)
    assert not [e for e in seen if e.get("log_failure") is not None]  # nothing unhandled, no traceback
    assert sum("could not be recorded before its lease runs out" in e.get("log_format", "") for e in seen) == len(emails)


def test_a_5xx_is_recorded_as_a_bounce_with_the_servers_reply_and_never_tried_again(store, pki, reactor_thread,
                                                                                     tmp_path):
    vouchers = day(6, seed=6)
    book(store, pki, vouchers)
    row = next(r for r in rows_of(store, vouchers).values() if r.channel is Channel.EMAIL)
    clock = Clock(NOW + datetime.timedelta(minutes=1))
    with smtp_server(tmp_path) as (mailbox, port, ca):
        mailbox.script[row.address] = ["550 5.1.1 no such user here"]
        w = worker(store, reactor_thread, port, ca, clock=clock)
        call(reactor_thread, w.run_once)
        clock.at += datetime.timedelta(days=2)
        call(reactor_thread, w.run_once)
    assert mailbox.tried.count(row.address) == 1 and mailbox.to(row.address) == []
    bounced = rows_of(store, vouchers)[row.end_to_end_id]
    assert (bounced.state, bounced.attempts, bounced.last_error) == (NoticeState.BOUNCED, 1,
                                                                     "550 5.1.1 no such user here")
    assert [r.end_to_end_id for r in store.notice_rows(state=NoticeState.BOUNCED)] == [row.end_to_end_id]
    assert row.end_to_end_id not in {r.end_to_end_id for r in store.notice_rows(state=NoticeState.FAILED)}
    [entry] = [e for e in store.history(f"{row.voucher_id}#{row.revision}") if e.event.action == "notice.bounced"]
    assert entry.event.detail["reply"] == "550 5.1.1 no such user here" and entry.event.detail["line"] == row.line_number


def test_a_server_without_starttls_is_refused_when_tls_is_required_and_the_notice_waits(store, pki, reactor_thread,
                                                                                        tmp_path):
    vouchers = day(6, seed=7)
    book(store, pki, vouchers)
    with smtp_server(tmp_path, tls=False) as (mailbox, port, _ca):
        w = worker(store, reactor_thread, port, None, clock=Clock(NOW + datetime.timedelta(minutes=1)),
                   require_tls=True)
        call(reactor_thread, w.run_once)
    assert mailbox.delivered == []
    rows = [r for r in rows_of(store, vouchers).values() if r.channel is not Channel.POST]
    assert rows and all(r.state is NoticeState.PENDING and "STARTTLS" in r.last_error for r in rows)


def test_a_notice_whose_sending_keeps_killing_the_worker_gives_up(store, pki, reactor_thread, tmp_path):
    vouchers = day(12, seed=13)
    book(store, pki, vouchers)
    row = next(r for r in rows_of(store, vouchers).values() if r.channel is Channel.EMAIL)
    at = NOW + datetime.timedelta(minutes=1)
    for _ in range(POLICY.max_attempts):  # each claim's worker dies before it records anything
        assert row.end_to_end_id in {n.end_to_end_id for n in store.claim_notices(at, lease=POLICY.lease, limit=100)}
        at += POLICY.lease + datetime.timedelta(seconds=1)
    with smtp_server(tmp_path) as (mailbox, port, ca):
        call(reactor_thread, worker(store, reactor_thread, port, ca, clock=Clock(at)).run_once)
    assert row.address not in mailbox.tried
    given_up = rows_of(store, vouchers)[row.end_to_end_id]
    assert given_up.state is NoticeState.FAILED and "stopped mid-attempt" in given_up.last_error
    assert [e.event.action for e in store.history(f"{row.voucher_id}#{row.revision}")
            if e.event.detail.get("end_to_end_id") == row.end_to_end_id] == ["notice.failed"]


def test_smtp_auth_works_and_a_refusal_of_the_gateway_itself_is_not_taken_for_a_bounce(reactor_thread, tmp_path):
    from gateway.notices.content import Result

    message = b"Subject: notice\n\nhello\n"
    with smtp_server(tmp_path, login=("vgw", "s3cret")) as (mailbox, port, ca):
        def sender(**changes):
            settings = dict(sender="no-reply@gov.taipei", ca=ca, timeout=10, username="vgw", password="s3cret")
            return SmtpSender(SmtpSettings("127.0.0.1", port, **{**settings, **changes}), reactor=reactor_thread)
        assert call(reactor_thread, sender().send, "a@example.com.tw", message).result is Result.DELIVERED
        assert [d.tls for d in mailbox.to("a@example.com.tw")] == [True]
        # no credentials (530), a sender the server will not relay for (550): ours to fix, not the payee's
        unauthenticated = call(reactor_thread, sender(username=None, password=None).send, "b@example.com.tw", message)
        mailbox.refused_senders.add("blocked@gov.taipei")
        unrelayed = call(reactor_thread, sender(sender="blocked@gov.taipei").send, "b@example.com.tw", message)
        for answer, code in ((unauthenticated, 530), (unrelayed, 550)):
            assert answer.result is Result.TRANSIENT and answer.code == code and "refused the gateway" in answer.reply
        # a 5xx after the message was sent is about this message: a bounce
        mailbox.refused_content = b"hello"
        refused = call(reactor_thread, sender().send, "c@example.com.tw", message)
        assert refused.result is Result.PERMANENT and refused.reply == "554 5.6.0 message content refused"
    assert mailbox.to("b@example.com.tw") == mailbox.to("c@example.com.tw") == []


def test_a_mail_server_that_never_answers_costs_one_bounded_attempt(reactor_thread):
    import socket
    import time

    from gateway.notices.content import Result

    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        sender = SmtpSender(SmtpSettings("127.0.0.1", silent.getsockname()[1], timeout=1.0), reactor=reactor_thread)
        started = time.monotonic()
        answer = call(reactor_thread, sender.send, "a@example.com.tw", b"Subject: x\n\nhello\n")
    assert answer.result is Result.TRANSIENT and time.monotonic() - started < 5, answer


# --- fax and post ------------------------------------------------------------------------------------------------


def test_fax_notices_go_to_the_fax_gateway_address_or_the_spool_folder(store, pki, reactor_thread, tmp_path):
    vouchers = day(12, seed=8)
    book(store, pki, vouchers)
    faxes = [r for r in rows_of(store, vouchers).values() if r.channel is Channel.FAX]
    assert faxes
    spool = tmp_path / "spool"
    with smtp_server(tmp_path) as (mailbox, port, ca):
        w = worker(store, reactor_thread, port, ca, clock=Clock(NOW + datetime.timedelta(minutes=1)),
                   fax=FaxSpool(spool, font=cjk_font_name))
        call(reactor_thread, w.run_once)
    assert not any(d.recipients[0].endswith("@fax.gov.taipei") for d in mailbox.delivered)
    for row in faxes:
        control = json.loads((spool / f"{row.end_to_end_id}.json").read_text("utf-8"))
        assert control["to"] == row.address.replace("-", "") and control["document"] == f"{row.end_to_end_id}.pdf"
        text = pypdf.PdfReader(spool / control["document"]).pages[0].extract_text()
        assert "入戶通知" in text and row.voucher_id in text
    assert not [p for p in spool.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    assert {rows_of(store, vouchers)[r.end_to_end_id].state for r in faxes} == {NoticeState.SENT}
    # the e-mail-to-fax gateway: the number's digits at the configured domain, the page attached
    sender = SmtpSender(SmtpSettings("127.0.0.1", 25))
    assert FaxByEmail(sender, clock=Clock(NOW)).address("02-27208889") == "0227208889@fax.gov.taipei"


def test_fax_by_email_carries_the_page_as_a_pdf(store, pki, reactor_thread, tmp_path):
    vouchers = day(12, seed=9)
    book(store, pki, vouchers)
    faxes = [r for r in rows_of(store, vouchers).values() if r.channel is Channel.FAX]
    with smtp_server(tmp_path) as (mailbox, port, ca):
        call(reactor_thread, worker(store, reactor_thread, port, ca,
                                    clock=Clock(NOW + datetime.timedelta(minutes=1))).run_once)
    for row in faxes:
        [delivered] = mailbox.to(row.address.replace("-", "") + "@fax.gov.taipei")
        message = delivered.message
        [attachment] = list(message.iter_attachments())
        assert attachment.get_content_type() == "application/pdf"
        assert "入戶通知" in message.get_body(("plain",)).get_content()


def test_the_days_letters_are_one_a4_page_per_postal_notice_and_printed_once(store, pki, tmp_path):
    vouchers = day(16, seed=10)
    book(store, pki, vouchers)
    posts = {r.end_to_end_id: r for r in rows_of(store, vouchers).values() if r.channel is Channel.POST}
    assert posts
    taipei_day = (NOW + datetime.timedelta(hours=8)).date()
    path, count = write_letters(store, taipei_day - datetime.timedelta(days=1), tmp_path, now=NOW, font=cjk_font_name())
    assert (path, count) == (None, 0)  # nothing was paid before that day
    path, count = write_letters(store, taipei_day, tmp_path, now=NOW, font=cjk_font_name())
    assert count == len(posts) and path.name.startswith(f"letters-{taipei_day.isoformat()}-")
    reader = pypdf.PdfReader(path)
    assert len(reader.pages) == len(posts)
    for page in reader.pages:
        assert [round(float(v)) for v in page.mediabox[2:]] == [595, 842]  # A4 in points
    texts = [page.extract_text() for page in reader.pages]
    payees = {(v.voucher_id, line.number): line for v in vouchers for line in v.lines}
    for row in posts.values():
        line = payees[(row.voucher_id, row.line_number)]
        assert any(line.payee_name in t and row.address in t and "入戶通知" in t and "110204" in t for t in texts)
    after = rows_of(store, vouchers)
    assert {after[e].state for e in posts} == {NoticeState.SENT}
    assert sorted(after[e].message_id for e in posts) == sorted(f"{path.name}#p{i}" for i in range(1, len(posts) + 1))
    assert write_letters(store, taipei_day, tmp_path, now=NOW + datetime.timedelta(minutes=1),
                         font=cjk_font_name()) == (None, 0)


def test_a_letter_batch_written_before_a_crash_is_not_printed_again(store, pki, tmp_path):
    vouchers = day(16, seed=11)
    book(store, pki, vouchers)
    taipei_day = (NOW + datetime.timedelta(hours=8)).date()

    class CrashAfterWriting:
        """The store of a batch that dies once its file is written, before recording anything."""

        def __getattr__(self, name):
            return getattr(store, name)

        def record_notice_outcome(self, *args, **kwargs):
            raise SystemExit("crashed")

    with pytest.raises(SystemExit):
        write_letters(CrashAfterWriting(), taipei_day, tmp_path, now=NOW, font=cjk_font_name())
    [written] = list(tmp_path.glob("letters-*.pdf"))
    path, count = write_letters(store, taipei_day, tmp_path, now=NOW + POLICY.lease + datetime.timedelta(seconds=1),
                                font=cjk_font_name())
    assert path is None and count == len(pypdf.PdfReader(written).pages) > 0  # recorded, not printed again
    assert list(tmp_path.glob("letters-*.pdf")) == [written]
    assert {r.state for r in rows_of(store, vouchers).values() if r.channel is Channel.POST} == {NoticeState.SENT}


def test_lines_left_unpaid_keep_their_notices_waiting(store, pki):
    vouchers = day(6, seed=12)
    place_accepted(store, vouchers, at=NOW)
    manifest = pki.manifest
    signer = SigningIdentity(load_key(Path(manifest["gateway"]["key"])),
                             load_cert(Path(manifest["gateway"]["cert"])), TAIPEI_TREASURY)
    BankBatcher(store, signer, clock=lambda: NOW).batch_all()
    rows = rows_of(store, vouchers)
    assert rows and {r.state for r in rows.values()} == {NoticeState.WAITING}
    assert {p.state for v in vouchers for p in store.payments_of(v.voucher_id, v.revision)} == {LineState.PENDING}
    assert store.claim_notices(NOW + datetime.timedelta(days=1), lease=POLICY.lease, channels=tuple(Channel)) == []


# --- the letter's layout -----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.text(st.sampled_from("臺北市信義區市府路段巷弄號樓之𪚥堃 AbcRoom12B-@.,"), max_size=260),
       st.floats(40, 300), st.sampled_from([6, 9, 12]))
def test_wrap_breaks_chinese_text_between_characters_and_every_line_fits(text, width, size):
    from reportlab.pdfbase.pdfmetrics import stringWidth
    font = cjk_font_name()
    lines = wrap(text, font, size, width)
    assert all(stringWidth(line, font, size) <= width for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")  # nothing lost, only break spaces dropped


def postal_notice(address: str, name: str) -> DepositNotice:
    return DepositNotice(end_to_end_id="379000001A1150000123R001L0002", voucher_id="379000001A-115-0000123",
                         revision=1, line_number=2, agency="379000001A",
                         target=NoticeTarget(Channel.POST, address, "110204"), purpose="資訊設備維護費" * 20,
                         payee_name=name, amount=1234567, bank_code="012", branch_code="6812",
                         account_number="27480409441741", paid_on=datetime.date(2026, 11, 27), attempts=1, claim="c1")


def drawn(pdf: bytes) -> list[tuple[str, float, float, float]]:
    """Each line of text on the page as pypdf reads it back: (text, x, y, size)."""
    runs: list = []
    pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text(
        visitor_text=lambda text, cm, tm, font, size: runs.append((text.strip("\n"), tm[4], tm[5], size))
        if text.strip() else None)
    return runs


def test_a_200_character_address_and_a_long_name_are_wrapped_inside_the_envelope_window():
    from reportlab.pdfbase.pdfmetrics import stringWidth
    font = cjk_font_name()
    address = ("臺北市信義區市府路一段二百三十四巷五十六弄七十八號九樓之十" * 7)[:200]
    name = "歐陽" + "明" * 48
    runs = drawn(render_letters([(postal_notice(address, name), compose(postal_notice(address, name),
                                                                         bank_name=None))], font=font))
    left, top, width, height = WINDOW
    window = [r for r in runs if 842 - (top + height) <= r[2] <= 842 - top]
    text = "".join(r[0] for r in window)
    assert address in text and f"{name} 君啟" in text and "110204" in text  # nothing clipped, all in the window
    assert len(window) > 3
    for line, x, _y, size in window:
        assert x >= left and x + stringWidth(line, font, size) <= left + width - WINDOW_INSET + 0.01, line
    page = 595.2756
    for line, x, _y, size in runs:  # the greeting and the lines below the fold stay on the page too
        assert x + stringWidth(line, font, size) <= page - 20 * 72 / 25.4, line
    assert name in "".join(r[0] for r in runs if r[2] < 842 - (top + height))


def test_a_character_the_font_lacks_prints_as_its_code_point_on_letters_and_fax_pages(tmp_path):
    from adapters.notices.fax import FaxSpool
    notice = postal_notice("臺北市信義區市府路1號", "王𪚥明")
    letter = "".join(r[0] for r in drawn(render_letters([(notice, compose(notice, bank_name=None))],
                                                        font=cjk_font_name())))
    assert "王〔U+2A6A5〕明 君啟" in letter and "王〔U+2A6A5〕明 您好" in letter
    fax = dataclasses.replace(notice, target=NoticeTarget(Channel.FAX, "02-27208888"))
    FaxSpool(tmp_path, font=cjk_font_name).write(fax, compose(fax, bank_name=None))
    page = "".join(r[0] for r in drawn((tmp_path / f"{fax.end_to_end_id}.pdf").read_bytes()))
    assert "王〔U+2A6A5〕明" in page and "\U0002A6A5" not in page
