"""The deposit notice worker in the gateway process: claims due notices, delivers them, records each outcome.

Every ``poll_seconds`` (on the reactor, the store calls in the thread pool, one run at a time):

1. claim up to ``batch`` due e-mail and fax notices (a lease in the store; ``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL, so several gateway processes share the work and never take one notice twice);
2. deliver them, at most ``concurrency`` at once: e-mail through :class:`adapters.notices.smtp.SmtpSender`,
   fax through the configured :mod:`adapters.notices.fax` implementation;
3. record each outcome (gateway/notices/content.py ``after_attempt``): sent; bounced on a 5xx; on a 4xx or no
   answer pending again after a jittered, capped backoff, or failed after the last attempt. A final outcome
   appends ``notice.sent`` / ``notice.bounced`` / ``notice.failed`` to the voucher's audit history in the
   same transaction. A record the store refuses (a short database outage) is tried again with a growing
   pause until it is stored or the lease is about to run out: a mail the server accepted but that stays
   unrecorded would be claimed and sent again once its lease ran out.

Once a day, at ``letters_at`` Taipei time or later, the day's postal notices become one PDF of letters in
``letters_dir`` (adapters/notices/letters.py). A worker that dies mid-delivery leaves a lease that runs out:
the notice is delivered again with the same Message-ID (at least once; a mail server's duplicate is
recognisable), and a notice whose attempts keep killing the worker gives up at ``max_attempts``.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from twisted.internet import defer, task
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from adapters.clock import utc_now
from adapters.notices.mail import build_message, sender_address
from gateway.business_time import TAIPEI
from gateway.notices.content import (
    NOTICE_ACTOR,
    AttemptResult,
    Channel,
    DepositNotice,
    NoticeState,
    Outcome,
    Result,
    RetryPolicy,
    after_attempt,
    compose,
    outcome_detail,
)
from gateway.notices.content import message_id as notice_message_id
from gateway.store import AuditEvent, StoreError
from gateway.vouchers.bank_directory import BankDirectory

log = Logger(namespace="vgw.notices")


@dataclass(frozen=True)
class NoticeWorkerSettings:
    poll_seconds: float = 10.0
    concurrency: int = 5
    batch: int = 10
    """Notices claimed at once: at most two rounds of ``concurrency``, so a batch ends (each send is bounded by
    twice the SMTP timeout) well within the lease it was claimed under."""
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    letters_dir: Path | None = None
    letters_at: datetime.time = datetime.time(16, 0)
    """Taipei time after which the day's letters are written (the post room's last pick-up)."""
    record_retry_first: float = 0.5
    """Seconds before an outcome the store refused is recorded again; doubled each time, up to 30 s."""
    record_margin: float = 30.0
    """Seconds before the claim's lease runs out when a refused outcome stops being tried again (another
    worker may claim the notice after that, and a late record would no longer be stored anyway)."""


class NoticeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outcomes = Counter("vgw_deposit_notices", "Deposit notice attempts by channel and outcome (sent, "
                                "retry, bounced, failed; bounced and failed are alerts)", ["channel", "outcome"],
                                registry=registry)
        self.record_failures = Counter("vgw_deposit_notice_record_failures", "Deposit notice outcomes the store "
                                       "refused to record (each failed try; the worker tries again until shortly "
                                       "before the lease runs out)", ["channel"], registry=registry)
        self.unrecorded = Counter("vgw_deposit_notice_unrecorded", "Deposit notice outcomes given up on unrecorded "
                                  "before the lease ran out: the notice may be delivered again (an alert)",
                                  ["channel"], registry=registry)


class EmailChannel:
    """E-mail notices: plain text + HTML through the SMTP sender."""

    def __init__(self, sender, *, clock: Callable[[], datetime.datetime]) -> None:
        self.sender = sender
        self.clock = clock

    def deliver(self, notice: DepositNotice, text) -> defer.Deferred:
        mid = notice_message_id(notice.end_to_end_id, self.sender.settings.domain)
        body = build_message(text, sender=sender_address(self.sender.settings.sender), to=notice.target.address,
                             message_id=mid, at=self.clock())
        return self.sender.send(notice.target.address, body).addCallback(lambda r: (r, mid))


class NoticeWorker:
    def __init__(self, store, channels: dict[Channel, object], *, settings: NoticeWorkerSettings = NoticeWorkerSettings(),
                 reactor=None, clock: Callable[[], datetime.datetime] = utc_now,
                 registry: CollectorRegistry | None = None, banks: BankDirectory | None = None,
                 font: Callable[[], str] | None = None, jitter: Callable[[], float] = random.random) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.store = store
        self.channels = channels
        self.settings = settings
        self.clock = clock
        self.metrics = NoticeMetrics(registry) if registry is not None else None
        self.banks = banks or BankDirectory.shipped()
        self.font = font
        self.jitter = jitter
        self._loop: task.LoopingCall | None = None
        self._letters_done: datetime.date | None = None

    def start(self) -> None:
        self._loop = task.LoopingCall(self._logged)
        self._loop.clock = self.reactor
        self._loop.start(self.settings.poll_seconds, now=True)
        log.info("deposit notices: polling every {s} s", s=self.settings.poll_seconds)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _logged(self):
        d = self.run_once()
        d.addErrback(lambda failure: log.failure("deposit notice run failed", failure))
        return d

    @defer.inlineCallbacks
    def run_once(self):
        """One poll: deliver what is due (until none is), then the letters if their time has come; fires with
        how many notices got an outcome."""
        done = 0
        while True:
            deadline = self.reactor.seconds() + self.settings.policy.lease.total_seconds() - self.settings.record_margin
            claimed = yield deferToThread(self.store.claim_notices, self.clock(), lease=self.settings.policy.lease,
                                          limit=self.settings.batch, channels=tuple(self.channels))
            if not claimed:
                break
            work = (self._one(n, deadline) for n in claimed)
            yield defer.DeferredList([task.cooperate(work).whenDone() for _ in range(self.settings.concurrency)])
            done += len(claimed)
            if len(claimed) < self.settings.batch:
                break
        if self.settings.letters_dir is not None and self.font is not None:
            yield self._daily_letters()
        return done

    @defer.inlineCallbacks
    def _one(self, notice: DepositNotice, deadline: float):
        policy = self.settings.policy
        if notice.attempts > policy.max_attempts:  # earlier attempts died with their worker
            result, mid = AttemptResult(Result.TRANSIENT, f"gave up: {notice.attempts - 1} attempts ended without "
                                        "an answer (the sender stopped mid-attempt)"), None
            outcome = Outcome(NoticeState.FAILED, None, result.reply, None)
        else:
            text = compose(notice, bank_name=self.banks.bank_name(notice.bank_code))
            try:
                result, mid = yield self.channels[notice.target.channel].deliver(notice, text)
            except Exception as exc:  # a bug in a channel must not lose the notice: retried, then failed
                log.failure("delivering the notice of {id} failed", id=notice.end_to_end_id)
                result, mid = AttemptResult(Result.TRANSIENT, f"{type(exc).__name__}: {exc}"), None
            outcome = after_attempt(notice.attempts, result, policy, at=self.clock(), jitter=self.jitter())
        yield self._record(notice, outcome, mid, deadline)

    @defer.inlineCallbacks
    def _record(self, notice: DepositNotice, outcome: Outcome, mid: str | None, deadline: float):
        """Record the outcome; a refusal is retried (with a doubling pause) until ``deadline``, the reactor
        time shortly before the claim's lease runs out. Never errbacks: a record given up on is logged and
        counted, and the notice goes out again after its lease (at least once, same Message-ID)."""
        detail = outcome_detail(notice, outcome, message_id=mid)
        event = None if detail is None else AuditEvent(self.clock(), NOTICE_ACTOR, f"notice.{outcome.state.value}",
                                                       notice.subject, None, detail)
        label = {NoticeState.PENDING: "retry"}.get(outcome.state, outcome.state.value)
        if self.metrics:
            self.metrics.outcomes.labels(notice.target.channel.value, label).inc()
        if outcome.state in (NoticeState.BOUNCED, NoticeState.FAILED):
            log.warn("deposit notice of {id} {state} ({channel} {address}): {why}", id=notice.end_to_end_id,
                     state=outcome.state.value, channel=notice.target.channel.value, address=notice.target.address,
                     why=outcome.last_error)
        pause = self.settings.record_retry_first
        while True:
            try:
                stored = yield deferToThread(self.store.record_notice_outcome, notice, outcome, message_id=mid,
                                             event=event)
            except Exception as exc:  # StoreError (an outage), or a bug: neither may escape unhandled
                if self.metrics:
                    self.metrics.record_failures.labels(notice.target.channel.value).inc()
                if not isinstance(exc, StoreError):
                    log.failure("recording the notice of {id} failed", id=notice.end_to_end_id)
                if self.reactor.seconds() + pause >= deadline:
                    log.error("deposit notice of {id}: its outcome ({state}) could not be recorded before its "
                              "lease runs out, it may be delivered again: {error}", id=notice.end_to_end_id,
                              state=outcome.state.value, error=str(exc))
                    if self.metrics:
                        self.metrics.unrecorded.labels(notice.target.channel.value).inc()
                    return
                log.warn("deposit notice of {id}: recording its outcome ({state}) failed, trying again in {pause} s: "
                         "{error}", id=notice.end_to_end_id, state=outcome.state.value, pause=pause, error=str(exc))
                yield task.deferLater(self.reactor, pause, lambda: None)
                pause = min(pause * 2, 30.0)
                continue
            if not stored:  # the lease ran out mid-send and another worker took the notice: it may go twice
                log.warn("deposit notice of {id}: its lease ran out before the outcome ({state}) was recorded",
                         id=notice.end_to_end_id, state=outcome.state.value)
            return

    def _daily_letters(self) -> defer.Deferred:
        now = self.clock().astimezone(TAIPEI)
        if self._letters_done == now.date() or now.time() < self.settings.letters_at:
            return defer.succeed(None)
        from adapters.notices.letters import write_letters

        def write():
            path, count = write_letters(self.store, now.date(), self.settings.letters_dir, now=self.clock(),
                                        font=self.font(), bank_name=self.banks.bank_name,
                                        policy=self.settings.policy)
            if count:
                log.info("deposit notice letters: {n} in {path}", n=count, path=str(path))
                if self.metrics:
                    self.metrics.outcomes.labels("post", "sent").inc(count)
            self._letters_done = now.date()

        return deferToThread(write)
