"""The bank exchange's moving parts: the batcher, the outbox relay and the report intake.

- :class:`BankBatcher` (blocking, thread pool): treasury-accepted vouchers → one ``BatchWrite`` (vouchers
  batched + payment lines + signed pain.001 outbox rows) in ONE transaction (gateway/bank/settlement.py).
- :class:`OutboxRelay` (reactor): publishes every outbound message the broker has not confirmed yet, many in
  flight at once, and marks each sent only after its confirm. A crash between confirm and mark sends the
  same bytes again; the bank side refuses the repeated MsgId/EndToEndIds, so nothing is paid twice. With
  several processes on one store, only the one holding the relay turn publishes (adapters/storage/relay_turn.py).
- :class:`ReportIntake` (thread pool, behind a transport consumer): verifies a bank report (signature pinned
  to the bank's certificate, official XSD), applies it in ONE transaction, and answers ``ack`` or ``dead``.
  A repeat changes nothing; a report from or for another party, under an envelope id that is not its own, not
  bound to the message and blocks its lines were sent in (gateway/bank/binding.py), naming payments we never
  sent, contradicting what the bank said before, or malformed, changes nothing and goes to the dead-letter
  queue, counted by its code for the operators' alert.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from adapters.clock import utc_now
from gateway.bank.envelope import BANK_LIMITS, open_sealed
from gateway.bank.reports import read_camt054, read_pain002
from gateway.bank.settlement import (
    BANK_NAME,
    GATEWAY_NAME,
    REPORT_ROUTING,
    SigningIdentity,
    build_batch,
    scope_of,
    settle_report,
    settlement_write,
)
from gateway.bank.store import BankMessageRecord, LineChanged, ReportAlreadyStored
from gateway.business_time import TAIPEI
from gateway.errors import Refusal
from gateway.store import StatusChanged, StoreError, WorkflowWrite
from gateway.vouchers.xml_mapping import read_stored_voucher
from gateway.workflow.transitions import Status
from gateway.workflow.working_days import DateOutsideCalendar, WorkingDayCalendar
from gateway.xmlsec.parsing import XmlLimits

log = Logger(namespace="vgw.bank")

REPORT_TYPES = frozenset({"pain.002.001.10", "camt.054.001.08"})
MAX_ATTEMPTS = 10
RETRY_DELAY = 2.0
"""Seconds a report waits before going back to its queue when the store failed."""
DEFAULT_MAX_PER_MESSAGE = 5_000
DEFAULT_VOUCHERS_PER_BATCH = 1_000


class BankBatcher:
    """Batches treasury-accepted vouchers into signed transfer messages (see module)."""

    def __init__(self, store, signer: SigningIdentity, *, calendar: WorkingDayCalendar | None = None,
                 clock: Callable[[], datetime.datetime] = utc_now, max_per_message: int = DEFAULT_MAX_PER_MESSAGE,
                 vouchers_per_batch: int = DEFAULT_VOUCHERS_PER_BATCH) -> None:
        self.store = store
        self.signer = signer
        self.calendar = calendar or WorkingDayCalendar.shipped()
        self.clock = clock
        self.max_per_message = max_per_message
        self.vouchers_per_batch = vouchers_per_batch

    def execution_date(self, now: datetime.datetime) -> datetime.date:
        """Today in Taipei when it is a working day, else the next one; outside the shipped calendar, today
        (the bank, not the gateway, has the last word on its own business days)."""
        today = now.astimezone(TAIPEI).date()
        try:
            return self.calendar.add_working_days(today, 0)
        except DateOutsideCalendar:
            return today

    def batch_once(self) -> int:
        """Batch up to ``vouchers_per_batch`` treasury-accepted revisions; how many payment lines were batched."""
        for _ in range(MAX_ATTEMPTS):
            records = self.store.queue(Status.TREASURY_ACCEPTED.value, limit=self.vouchers_per_batch)
            if not records:
                return 0
            write = self._build(records)
            try:
                self.store.record_batch(write)
            except StatusChanged:
                continue  # another batcher took one of them: read the queue again
            self._logged(write, records)
            return len(write.payments)
        raise Refusal("voucher-busy", "the treasury-accepted queue kept changing during batching")

    def batch_all(self) -> int:
        """Batch everything treasury-accepted now; the number of lines batched.

        Pipelined: while one batch's transaction commits (the database works, the GIL is free), the next is
        read, built and signed. Each batch pages on from where the previous one ended (status time, id),
        so a batch still committing is never read again. A batch another process took first is skipped
        (its StatusChanged); what remains is picked up by the next run."""
        total = 0
        after = None
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vgw-batch-commit") as committer:
            committing = None
            while True:
                records = self.store.queue(Status.TREASURY_ACCEPTED.value, limit=self.vouchers_per_batch, after=after)
                if not records:
                    break
                last = records[-1]
                after = (last.status_at, last.voucher_id, last.revision)
                write = self._build(records)
                total += self._committed(committing)
                committing = (committer.submit(self.store.record_batch, write), write, records)
            total += self._committed(committing)
        return total

    def _build(self, records):
        now = self.clock()
        vouchers = [(r, read_stored_voucher(r.received_bytes)) for r in records]
        return build_batch(vouchers, execution_date=self.execution_date(now), max_per_message=self.max_per_message,
                           signer=self.signer, at=now)

    def _committed(self, committing) -> int:
        if committing is None:
            return 0
        future, write, records = committing
        try:
            future.result()
        except StatusChanged:
            log.info("a batch of {n} vouchers was taken by another batcher meanwhile", n=len(records))
            return 0
        self._logged(write, records)
        return len(write.payments)

    @staticmethod
    def _logged(write, records) -> None:
        log.info("batched {lines} payment lines of {vouchers} vouchers into {messages} transfer messages",
                 lines=len(write.payments), vouchers=len(records), messages=len(write.messages))


class OutboxRelay:
    """Publishes unconfirmed outbound messages through a bank transport (see module)."""

    def __init__(self, store, transport, *, clock: Callable[[], datetime.datetime] = utc_now,
                 page: int = 200) -> None:
        self.store = store
        self.transport = transport
        self.clock = clock
        self.page = page
        self._in_flight: set[str] = set()
        self.confirmed = 0

    @defer.inlineCallbacks
    def pump(self):
        """Publish every unsent message not already in flight; fires with how many were confirmed and marked.
        Failures (broker down, refused) leave the message unsent for the next pump. Only the relay holding the
        store's relay turn publishes (adapters/storage/relay_turn.py); the others' pumps do nothing (fire with 0)."""
        sent = 0
        if not (yield deferToThread(self.store.relay_turn)):
            return sent
        while True:
            messages = yield deferToThread(self.store.unsent_messages, self.page)
            fresh = [m for m in messages if m.message_id not in self._in_flight]
            if not fresh:
                return sent
            results = yield defer.DeferredList([self._publish(m) for m in fresh], consumeErrors=True)
            done = sum(1 for ok, value in results if ok and value)
            sent += done
            if done < len(fresh):
                return sent  # some failed: the next pump retries them

    @defer.inlineCallbacks
    def _publish(self, message: BankMessageRecord):
        self._in_flight.add(message.message_id)
        try:
            try:
                yield self.transport.publish(message.message_id, message.routing, message.body,
                                             {"message-type": message.message_type, "sha256": message.sha256})
            except Exception as exc:  # TransportRefused / TransportLost: stays unsent, retried by the next pump
                log.warn("transfer message {id} not confirmed: {why}", id=message.message_id, why=str(exc))
                return False
            yield deferToThread(self.store.mark_sent, message.message_id, self.clock())
            self.confirmed += 1
            return True
        finally:
            self._in_flight.discard(message.message_id)


@dataclass
class IntakeCounts:
    """What the report intake did, for metrics and benchmarks."""

    reports: int = 0
    repeats: int = 0
    dead: int = 0
    lines: int = 0
    unmatched: int = 0


class ReportIntake:
    """Verifies and applies bank reports (see module). ``handle`` is blocking; ``handler`` is the transport's."""

    def __init__(self, store, bank_cert: x509.Certificate, *, treasury_account: str,
                 clock: Callable[[], datetime.datetime] = utc_now, limits: XmlLimits = BANK_LIMITS,
                 on_dead: Callable[[str], None] | None = None, bank_name: str = BANK_NAME,
                 gateway_name: str = GATEWAY_NAME) -> None:
        self.store = store
        self.bank_cert = bank_cert
        self.treasury_account = treasury_account
        self.bank_name = bank_name
        """The Sender a report must name: the agent bank this gateway exchanges with (its certificate is pinned)."""
        self.gateway_name = gateway_name
        """The Receiver a report must name: this gateway, as it names itself on its transfer messages."""
        self.clock = clock
        self.limits = limits
        self.on_dead = on_dead or (lambda code: None)
        self.counts = IntakeCounts()

    def handler(self, body: bytes, headers: dict, message_id: str | None):
        """The transport consumer's callback: the blocking work in the thread pool, fires 'ack', 'dead' or —
        after :data:`RETRY_DELAY` seconds, so a store outage does not spin through the delivery limit —
        'retry'."""
        from twisted.internet import reactor, task

        def answered(verdict: str):
            return task.deferLater(reactor, RETRY_DELAY, lambda: verdict) if verdict == "retry" else verdict

        return deferToThread(self.handle, body).addCallback(answered)

    def handle(self, body: bytes) -> str:
        """Apply one report; 'ack' when applied or a harmless repeat, 'dead' when it must not be applied,
        'retry' when the store failed (the report is fine; nothing was written)."""
        try:
            verdict = self._apply(body)
        except Refusal as refusal:
            verdict = self._dead(refusal.code, refusal.message)
        except StoreError as exc:
            log.warn("bank report not applied, the store failed ({why}); it will be delivered again", why=str(exc))
            verdict = "retry"
        return verdict

    def _dead(self, code: str, why: str) -> str:
        self.counts.dead += 1
        log.warn("bank report dead-lettered ({code}): {why}", code=code, why=why)
        self.on_dead(code)
        return "dead"

    def _apply(self, body: bytes) -> str:
        now = self.clock()
        sealed = open_sealed(body, signer_cert=self.bank_cert, allowed_types=REPORT_TYPES, sender=self.bank_name,
                             receiver=self.gateway_name, now=now, limits=self.limits)
        if sealed.message_type == "camt.054.001.08":
            report = read_camt054(sealed.document, treasury_account=self.treasury_account)
        else:
            report = read_pain002(sealed.document)
        if report.unmatched:
            # Entries that are not about a payment we sent (a fee, an unexplained credit): nothing to apply
            # for them, but an operator must look; the rest of the report is applied.
            self.counts.unmatched += len(report.unmatched)
            log.warn("bank report {id}: {n} entries match no payment ({first})", id=sealed.message_id,
                     n=len(report.unmatched), first=str(report.unmatched[0]))
            self.on_dead("bank-entry-unmatched")
        stored = self.store.bank_message("in", sealed.message_id)
        if stored is not None:  # checked first so a repeat is not judged again (the write checks it too)
            return self._repeat(stored.sha256 == sealed.sha256, sealed.message_id)
        record = BankMessageRecord("in", sealed.message_id, sealed.message_type, REPORT_ROUTING, body,
                                   hashlib.sha256(body).hexdigest(), len(report.outcomes), 0, now)
        sent = None if report.original is None else self.store.sent_message(report.original.message_id)
        for _ in range(MAX_ATTEMPTS):
            targets = self._targets(report.outcomes)
            settlement = settle_report(report, record, targets=targets, sent=sent, at=now)
            if settlement.unapplied:
                first = settlement.unapplied[0]
                return self._dead(first.code, f"report {report.message_id}: {first.message} "
                                              f"({len(settlement.unapplied)} item(s) not applicable)")
            try:
                self.store.record_report(settlement.write)
            except ReportAlreadyStored as repeat:
                return self._repeat(repeat.same, report.message_id)
            except LineChanged:
                continue  # another consumer applied a report meanwhile: decide again on what is stored
            touched = sorted({(event.subject.rsplit("#", 1)[0], int(event.subject.rsplit("#", 1)[1]))
                              for event in settlement.write.events})
            try:
                self.settle_all(touched)
            except Exception:  # the report is stored and acknowledged; the settle sweep finishes the vouchers
                log.failure("settling {n} vouchers after report {id} failed; the sweep will retry", n=len(touched),
                            id=report.message_id)
            self.counts.reports += 1
            self.counts.lines += len(settlement.write.lines)
            return "ack"
        raise Refusal("voucher-busy", f"report {report.message_id}: its payments kept changing")

    def settle(self, voucher_id: str, revision: int) -> str | None:
        """Settle one revision if its lines (read now) all have a final answer; the status it moved to, or None."""
        for _ in range(MAX_ATTEMPTS):
            record = self.store.get(voucher_id, revision)
            write = settlement_write(record, self.store.line_states([(voucher_id, revision)]).get(
                (voucher_id, revision), []), self.clock())
            if write is None:
                return None
            try:
                self.store.apply_workflow(write)
            except StatusChanged:
                continue  # another consumer settled it or moved it meanwhile: look again
            return write.changes[0].new_status
        raise Refusal("voucher-busy", f"{voucher_id}#{revision} kept changing while settling")

    def settle_all(self, keys: list[tuple[str, int]]) -> int:
        """Settle every revision in ``keys`` that its lines allow, in ONE transaction (a report settles hundreds
        of vouchers at once); if any moved meanwhile, one by one instead. How many settled."""
        now = self.clock()
        lines = self.store.line_states(keys)
        heads = self.store.heads(keys)
        writes = []
        for key in keys:
            write = settlement_write(heads[key], lines.get(key, []), now)
            if write is not None:
                writes.append(write)
        if not writes:
            return 0
        try:
            self.store.apply_workflow(WorkflowWrite(tuple(c for w in writes for c in w.changes),
                                                    tuple(e for w in writes for e in w.events)))
            return len(writes)
        except StatusChanged:
            return sum(1 for w in writes if self.settle(w.changes[0].voucher_id, w.changes[0].revision))

    def settle_sweep(self, limit: int = 200) -> int:
        """Settle what a crash left between a report's commit and its settlement: batched (and paid) revisions,
        oldest first; how many settled."""
        settled = 0
        for status in (Status.BATCHED, Status.PAID):
            for record in self.store.queue(status.value, limit=limit):
                if self.settle(record.voucher_id, record.revision):
                    settled += 1
        return settled

    def _repeat(self, same: bool, message_id: str) -> str:
        if same:
            self.counts.repeats += 1
            return "ack"
        return self._dead("bank-report-conflict", f"report id {message_id} was already received with other content")

    def _targets(self, outcomes) -> list[list]:
        """The stored lines each outcome names: single payments fetched together, groups and messages whole."""
        scopes = [scope_of(outcome) for outcome in outcomes]
        rows = self.store.payments_by_ids(sorted({ref for kind, ref in scopes if kind == "payment"}))
        targets = []
        for outcome, (kind, ref) in zip(outcomes, scopes):
            if kind == "payment":
                targets.append([rows[ref]] if ref in rows else [])
            elif kind == "group":
                targets.append(self.store.payments_of_message(outcome.original_message_id or "", ref))
            else:
                targets.append(self.store.payments_of_message(ref))
        return targets
