"""The bank exchange running: one object that wires the batcher, the outbox relay, the report consumer and
the sweeps to a store and a bank transport, on the reactor.

Used by ``vgw bank run`` (the exchange as a process of its own, what the crash tests kill) and by the
embedded demo. Every loop is safe to run in several processes at once — the batcher and the settlement
compare-and-set on status, the relay's repeat is harmless, a report is applied once — so a restarted or
second worker simply carries on from what the store holds.

Loops (each in the thread pool, never on the reactor, one run at a time):
- batch every ``batch_seconds``, then pump the relay at once;
- pump the relay every ``relay_seconds`` (what a broker outage or a crash left unsent);
- settle every ``sweep_seconds`` (vouchers a crash left between a report and its settlement);
- flag lines without a final answer after ``unconfirmed_after`` (an operator alert, counted in metrics);
- send again, by itself, each sent message with lines still open ``resend_after`` after it was last sent,
  at most ``max_resends`` times (gateway/bank/resend.py): ``mark_unsent`` with a ``bank.resend`` audit entry,
  and the relay publishes the same signed bytes once more.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.internet import defer, task
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from adapters.bank.exchange import DEFAULT_MAX_PER_MESSAGE, BankBatcher, OutboxRelay, ReportIntake
from adapters.clock import utc_now
from gateway.bank.resend import plan_resends
from gateway.bank.settlement import SigningIdentity

log = Logger(namespace="vgw.bank")


RESEND_PAGE = 100
"""Messages re-sent per sweep at most (the rest wait for the next sweep)."""


@dataclass(frozen=True)
class BankWorkerSettings:
    batch_seconds: float = 5.0
    relay_seconds: float = 2.0
    sweep_seconds: float = 10.0
    unconfirmed_after: datetime.timedelta = datetime.timedelta(hours=24)
    max_per_message: int = DEFAULT_MAX_PER_MESSAGE
    resend_after: datetime.timedelta | None = datetime.timedelta(minutes=30)
    """Send a message again when some of its lines still have no final answer this long after it was last
    sent; None or zero: never by itself (an operator still can, ``vgw bank resend``)."""
    max_resends: int = 5
    """Automatic re-sends per message at most, counted in the message's row (operators' re-sends count too);
    after that the unconfirmed-lines alert brings a person."""

    def __post_init__(self) -> None:
        if self.resend_after is not None and self.resend_after < datetime.timedelta(0):
            raise ValueError("resend_after is not negative")
        if self.max_resends < 0:
            raise ValueError("max_resends is not negative")

    @property
    def resending(self) -> bool:
        return bool(self.resend_after) and self.max_resends > 0


class BankMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.dead = Counter("vgw_bank_reports_dead_lettered", "Bank reports dead-lettered, by reason (an alert)",
                            ["code"], registry=registry)
        self.batched = Counter("vgw_bank_lines_batched", "Payment lines written into transfer messages",
                               registry=registry)
        self.unconfirmed = Gauge("vgw_bank_lines_unconfirmed", "Lines flagged unconfirmed and still without a final "
                                 "answer from the bank (an alert)", registry=registry)
        self.unsent = Gauge("vgw_bank_messages_unsent", "Transfer messages not yet confirmed by the broker",
                            registry=registry)
        self.resent = Counter("vgw_bank_messages_resent", "Sent transfer messages sent again by the worker "
                              "because lines had no final answer", registry=registry)


class BankWorker:
    def __init__(self, store, transport, signer: SigningIdentity, bank_cert: x509.Certificate, *,
                 settings: BankWorkerSettings = BankWorkerSettings(), reactor=None,
                 clock: Callable[[], datetime.datetime] = utc_now, registry: CollectorRegistry | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.store = store
        self.transport = transport
        self.settings = settings
        self.clock = clock
        self.metrics = BankMetrics(registry) if registry is not None else None
        self.batcher = BankBatcher(store, signer, clock=clock, max_per_message=settings.max_per_message)
        self.relay = OutboxRelay(store, transport, clock=clock)
        self.intake = ReportIntake(store, bank_cert, treasury_account=signer.debtor.account_number, clock=clock,
                                   on_dead=self._dead)
        self._loops: list[task.LoopingCall] = []

    def _dead(self, code: str) -> None:
        if self.metrics:
            self.metrics.dead.labels(code).inc()

    @defer.inlineCallbacks
    def start(self):
        """Connect the transport, start consuming reports, and start the loops; fires once running."""
        yield self.transport.start()
        self.transport.consume(self.transport.topology.reports_queue, self.intake.handler)
        s = self.settings
        for seconds, work in ((s.batch_seconds, self._batch), (s.relay_seconds, self._pump),
                              (s.sweep_seconds, self._sweep)):
            loop = task.LoopingCall(self._logged(work))
            loop.clock = self.reactor
            loop.start(seconds, now=True)
            self._loops.append(loop)
        log.info("bank exchange running: batch every {b} s, relay every {r} s", b=s.batch_seconds, r=s.relay_seconds)

    @staticmethod
    def _logged(work):
        def run():
            d = defer.maybeDeferred(work)
            d.addErrback(lambda failure: log.failure("bank exchange loop failed", failure))
            return d
        return run

    @defer.inlineCallbacks
    def _batch(self):
        lines = yield deferToThread(self.batcher.batch_all)
        if lines:
            if self.metrics:
                self.metrics.batched.inc(lines)
            yield self._pump()

    @defer.inlineCallbacks
    def _pump(self):
        yield self.relay.pump()
        if self.metrics:
            self.metrics.unsent.set(len((yield deferToThread(self.store.unsent_messages, 1000))))

    @defer.inlineCallbacks
    def _sweep(self):
        yield deferToThread(self.intake.settle_sweep)
        now = self.clock()
        flagged = yield deferToThread(self.store.flag_unconfirmed, now - self.settings.unconfirmed_after, now)
        if flagged:
            log.warn("{n} payment lines have no final answer from the bank after {after}", n=flagged,
                     after=str(self.settings.unconfirmed_after))
        if self.settings.resending:
            yield self.resend_unanswered()
        if self.metrics:
            totals = yield deferToThread(self.store.bank_totals)
            self.metrics.unconfirmed.set(totals["unconfirmed"])

    def resend_unanswered(self) -> defer.Deferred:
        """Make unsent again each message due for a re-send (see module), for the relay's next pump; fires
        with how many. A message another worker re-sent meanwhile is skipped (``sent_before``)."""
        return deferToThread(self._resend_unanswered)

    def _resend_unanswered(self) -> int:
        s = self.settings
        if not s.resending:
            return 0
        now = self.clock()
        cutoff = now - s.resend_after
        due = plan_resends(self.store.unanswered_messages(cutoff, max_resends=s.max_resends, limit=RESEND_PAGE),
                           at=now, after=s.resend_after, max_resends=s.max_resends)
        resent = 0
        for resend in due:
            if not self.store.mark_unsent(resend.message_id, resend.event, sent_before=cutoff):
                continue
            resent += 1
            detail = resend.event.detail
            log.warn("transfer message {id} sent again: {open} of {lines} lines without a final answer after "
                     "{after} (attempt {attempt} of {cap}{last})", id=resend.message_id, open=detail["open_lines"],
                     lines=detail["lines"], after=str(s.resend_after), attempt=detail["attempt"],
                     cap=s.max_resends, last="; the last automatic one" if resend.last else "")
        if resent and self.metrics:
            self.metrics.resent.inc(resent)
        return resent

    @defer.inlineCallbacks
    def stop(self):
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        yield self.transport.stop()
