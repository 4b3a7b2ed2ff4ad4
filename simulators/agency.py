"""``vgw sim agency``: simulated agencies' accounting systems and the people behind them, over HTTPS mTLS only.

Each voucher is a story, told step by step to the gateway exactly as an agency's system would tell it: the
preparer signs and submits it (``POST /v1/vouchers`` with the agency's TLS certificate); the reviewer (or the
deputy acting for them), the chief accountant, the head and the releaser each sign their approval, chained
to the previous signed document (``POST /v1/vouchers/{id}/actions``); some are sent back with a reason and
corrected as the next revision; after release the agency follows the voucher (``GET /v1/vouchers/{id}``)
through the treasury check and the bank until it is paid or returned (退匯), and corrects and re-remits the
returned lines. When a story ends, what the agency believes it sent (every line's EndToEndId and amount) is
reconciled against what the gateway reports it paid; when the run ends, each agency downloads its statement
(對帳單, ``GET /v1/statements``, CSV) and ticks off every payment it was told of.

Concurrency is a pool of threads, each taking the next due step of any story (a story's next step is due at
once; a follow-up poll after ``poll_seconds``); steps of stories started earlier go first, so vouchers finish
instead of piling up half approved. New stories start at ``rate`` per second (0: as fast as the pool goes)
until ``vouchers`` were started or ``duration`` has passed. The business mix is :mod:`simulators.agency_plans`.

The run ends with a :class:`AgencyReport`: vouchers and payments by outcome, throughput, and per API call
the latency p50/p95/p99, printed as a table or JSON.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import heapq
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from adapters.command_line import CliError
from adapters.pki_manifest import read_pki_manifest
from gateway.bank.payments import end_to_end_id
from gateway.vouchers.model import Voucher
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.workflow.actions import Action, Decision, action_element
from gateway.workflow.transitions import Actor
from gateway.xmlsec.signing import sign_document
from simulators.agency_plans import STAGES, AgencyMix, Mix, Plan, corrected, re_remittance
from simulators.mtls_load import Connection
from simulators.pki.layout import load_cert, load_key

WAITING = frozenset({"released", "held", "treasury-accepted", "batched"})
"""Statuses after release in which the agency can only wait (held: a treasury operator decides)."""
MAX_RE_REMITTANCES = 5


class Later(Exception):
    """The gateway asked to come back later (429 with Retry-After): the step is tried again then, unchanged."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds} s")
        self.seconds = seconds


@dataclass
class Story:
    plan: Plan
    voucher: Voucher
    due: float
    order: float  # when the story started: earlier stories' steps go first
    step: str = "submit"  # submit, stage, follow, done
    data: bytes = b""  # the current revision, signed
    previous: bytes = b""  # the last signed document of the chain
    stage: int = 0
    send_back: object = None
    outcome: str = ""
    detail: str = ""
    revisions: int = 1
    send_backs: int = 0
    re_remittances: int = 0
    paid_lines: int = 0
    returned_lines: int = 0
    amount_paid: int = 0
    paid: dict = field(default_factory=dict)  # EndToEndId -> amount, of the lines the gateway reported paid
    started: float = 0.0
    ended: float = 0.0


@dataclass
class AgencyReport:
    agencies: int
    started: int = 0
    wall_seconds: float = 0.0
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    kinds: collections.Counter = field(default_factory=collections.Counter)
    payments: collections.Counter = field(default_factory=collections.Counter)
    amount_paid: int = 0
    send_backs: int = 0
    deputy_reviews: int = 0
    re_remittances: int = 0
    revisions: int = 0
    reconciled: int = 0
    mismatches: list = field(default_factory=list)
    statements: int = 0  # agencies' statements (CSV) downloaded at the end and checked against their books
    statement_mismatches: list = field(default_factory=list)
    latencies: dict = field(default_factory=lambda: collections.defaultdict(list))
    errors: collections.Counter = field(default_factory=collections.Counter)
    throttled: collections.Counter = field(default_factory=collections.Counter)  # 429s, waited out and retried
    failovers: int = 0  # requests sent again to another gateway after theirs gave no answer
    stories: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)

    @property
    def finished(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "unfinished")

    @property
    def ok(self) -> bool:
        """Every voucher ended paid or returned, nothing unexpected, and the agency's books match the gateway's."""
        return (self.started > 0 and set(self.outcomes) <= {"paid", "returned"} and not self.mismatches
                and not self.unexpected and not self.statement_mismatches)

    def as_dict(self) -> dict:
        api = {}
        for call, samples in sorted(self.latencies.items()):
            ordered = sorted(samples)
            api[call] = {"count": len(ordered), "errors": self.errors.get(call, 0),
                         "throttled": self.throttled.get(call, 0),
                         **{f"p{q}_ms": round(_quantile(ordered, q / 100) * 1000, 1) for q in (50, 95, 99)}}
        return {
            "ok": self.ok, "agencies": self.agencies, "vouchers": self.started, "finished": self.finished,
            "outcomes": dict(sorted(self.outcomes.items())), "kinds": dict(sorted(self.kinds.items())),
            "payments": dict(sorted(self.payments.items())), "amount_paid": self.amount_paid,
            "send_backs": self.send_backs, "deputy_reviews": self.deputy_reviews,
            "re_remittances": self.re_remittances, "revisions": self.revisions,
            "reconciled_vouchers": self.reconciled, "reconciliation_mismatches": self.mismatches[:10],
            "statements": self.statements, "statement_mismatches": self.statement_mismatches[:10],
            "unexpected": self.unexpected[:10], "failovers": self.failovers,
            "wall_s": round(self.wall_seconds, 2),
            "vouchers_per_s": round(self.finished / self.wall_seconds, 2) if self.wall_seconds else 0.0,
            "api": api,
        }


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class AgencySimulator:
    """The agencies of a ``vgw pki init`` folder talking to the gateway at ``host:port``.

    ``more_gateways``: further ``(host, port)`` of gateways on the same store (scale-out). The agencies are
    split across all of them in turn; an agency whose gateway gives no answer (a dead process) sends the same
    bytes to the next one and stays there: a repeated voucher or action gets its original receipt, so a
    request that was committed before its answer was lost is not done twice."""

    def __init__(self, pki_dir: Path, host: str, port: int, *, agencies: list[str] | None = None, seed: int = 0,
                 run_tag: str | None = None, mix: Mix = Mix(), concurrency: int = 4, rate: float = 0.0,
                 poll_seconds: float = 1.0, today: datetime.date | None = None, evidence: Path | None = None,
                 more_gateways: tuple[tuple[str, int], ...] = ()) -> None:
        manifest = read_pki_manifest(pki_dir)
        known = sorted(manifest["agencies"])
        chosen = agencies or known
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise ValueError(f"agencies not in {pki_dir}: {', '.join(unknown)}")
        self.pki_dir, self.host, self.port = pki_dir, host, port
        self.agencies = chosen
        self.gateways = [(host, port), *more_gateways]
        self._home = {code: i % len(self.gateways) for i, code in enumerate(chosen)}  # index into gateways
        self._people_files = {code: manifest["agencies"][code]["people"] for code in chosen}
        self._people: dict[tuple[str, str], tuple] = {}
        tag = run_tag or hashlib.sha256(f"{seed}:{time.time_ns()}".encode()).hexdigest()[:5].upper()
        self.plans = AgencyMix(chosen, seed=seed, run_tag=tag, mix=mix)
        self.concurrency, self.rate, self.poll_seconds = concurrency, rate, poll_seconds
        self.today = today or datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).date()
        self.evidence = evidence
        self._lock = threading.Lock()
        self._plan_lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle: dict[str, list[Connection]] = {}
        self._contexts: dict = {}  # one TLS context per agency: loading its key and chain once

    # --- the wire -------------------------------------------------------------------------------------------

    def _connection(self, agency: str) -> Connection:
        """An idle keep-alive connection with ``agency``'s certificate, or a new one: connections are shared by
        the threads per agency, so a handshake is paid about once per agency and thread, not per request."""
        with self._lock:
            idle = self._idle.setdefault(agency, [])
            home = self.gateways[self._home[agency]]
            while idle:
                conn = idle.pop()
                if (conn.host, conn.port) == home:
                    return conn
                conn.close()  # to a gateway the agency has failed over from
        return self._new_connection(agency)

    def _new_connection(self, agency: str) -> Connection:
        tls = self.pki_dir / "agencies" / agency / "tls"
        with self._lock:
            host, port = self.gateways[self._home[agency]]
        return Connection(port=port, host=host, cafile=str(self.pki_dir / "root/cert.pem"),
                          cert=str(tls / "cert.pem"), key=str(tls / "key.pem"), timeout=60,
                          context=self._contexts.get(agency))

    def _call(self, name: str, agency: str, method: str, path: str, body: bytes | None = None
              ) -> tuple[int, dict, bytes]:
        """(HTTP status, the answer as JSON (a problem document, a status) or {}, the answer's bytes)."""
        started = time.perf_counter()
        gone = self.gateways[0]  # the gateway that last gave no answer
        for attempt in range(1 + len(self.gateways)):
            # a kept-alive connection the gateway closed while idle fails before any answer: send the same
            # bytes again on a new one (a repeated voucher or action gets its original receipt, so it is safe);
            # when a new one fails too, the gateway is gone: the same bytes go to the next gateway
            if attempt >= 2:
                self._fail_over(agency, gone)
            conn = self._connection(agency) if attempt == 0 else self._new_connection(agency)
            status, answer = conn.request(method, path, body, {"Content-Type": "application/xml"} if body else {})
            if status != 0:
                break
            gone = (conn.host, conn.port)
        seconds = time.perf_counter() - started
        with self._lock:
            self._contexts.setdefault(agency, conn.context)
            self._idle[agency].append(conn)
        document: object = {}
        if answer[:1] == b"{":
            try:
                document = json.loads(answer)
            except ValueError:
                pass
        elif status == 0:
            document = {"code": answer[:200].decode("utf-8", "replace")}  # why the connection failed
        with self._lock:
            self.report.latencies[name].append(seconds)
            if status == 429:  # over the agency's rate limit: wait as told, then the same step again
                self.report.throttled[name] += 1
            elif status not in (200, 202):
                self.report.errors[name] += 1
        if status == 429:
            try:
                wait = float(conn.retry_after or 1)
            except ValueError:
                wait = 1.0
            raise Later(min(max(wait, 0.1), 60.0))
        return status, document if isinstance(document, dict) else {}, answer

    def _fail_over(self, agency: str, failed: tuple[str, int]) -> None:
        """Move ``agency`` on from the gateway ``failed``, unless another thread already did."""
        with self._lock:
            if self.gateways[self._home[agency]] == failed:
                self._home[agency] = (self._home[agency] + 1) % len(self.gateways)
                self.report.failovers += 1

    def _person(self, agency: str, role: str) -> tuple:
        """(key, certificate) of ``agency``'s ``role`` holder, loaded the first time they sign."""
        person = self._people.get((agency, role))
        if person is None:
            files = self._people_files[agency][role]
            person = self._people[(agency, role)] = (load_key(Path(files["key"])), load_cert(Path(files["cert"])))
        return person

    def _sign(self, agency: str, role: str, data) -> bytes:
        at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        key, cert = self._person(agency, role)
        return sign_document(data, key, cert, at)

    # --- one story, one step at a time ----------------------------------------------------------------------

    def _step(self, story: Story) -> None:
        {"submit": self._submit, "stage": self._act, "follow": self._follow}[story.step](story)

    def _end(self, story: Story, outcome: str, detail: str = "") -> None:
        story.step, story.outcome, story.detail, story.ended = "done", outcome, detail, time.monotonic()

    def _unexpected(self, story: Story, what: str, status: int, answer: dict) -> None:
        code = answer.get("code") or f"http-{status}"
        with self._lock:
            self.report.unexpected.append({"voucher_id": story.voucher.voucher_id, "revision": story.voucher.revision,
                                           "step": what, "status": status, "code": code,
                                           "detail": str(answer.get("detail", ""))[:200]})
        self._end(story, f"refused/{code}", f"{what}: HTTP {status} {code}")

    def _submit(self, story: Story) -> None:
        v = story.voucher
        story.data = self._sign(v.agency_code, "preparer", voucher_to_xml(v))
        self._keep(f"{v.voucher_id}-r{v.revision}.xml", story.data)
        status, answer, receipt = self._call("submit", v.agency_code, "POST", "/v1/vouchers", story.data)
        if status not in (200, 202):  # 200: a repeat after a lost answer, with the original receipt
            return self._unexpected(story, "submit", status, answer)
        self._keep(f"{v.voucher_id}-r{v.revision}.receipt.xml", receipt)
        story.previous, story.stage, story.step = story.data, 0, "stage"

    def _act(self, story: Story) -> None:
        v, actor = story.voucher, STAGES[story.stage]
        send_back = story.send_back if story.send_back is not None and story.send_back.stage is actor else None
        role = "deputy" if actor is Actor.REVIEWER and story.plan.deputy_reviews else actor.value
        at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)  # the Action and XAdES time alike
        action = Action(voucher_id=v.voucher_id, revision=v.revision,
                        voucher_sha256=hashlib.sha256(story.data).hexdigest(),
                        previous_sha256=hashlib.sha256(story.previous).hexdigest(), stage=actor,
                        decision=Decision.REJECT if send_back else Decision.APPROVE, signing_time=at,
                        reason=send_back.reason if send_back else None)
        key, cert = self._person(v.agency_code, role)
        signed = sign_document(action_element(action), key, cert, at)
        self._keep(f"{v.voucher_id}-r{v.revision}-{actor.value}.xml", signed)
        name = "reject" if send_back else "approve"
        status, answer, receipt = self._call(name, v.agency_code, "POST", f"/v1/vouchers/{v.voucher_id}/actions",
                                             signed)
        if status not in (200, 202):
            return self._unexpected(story, f"{actor.value} {name}", status, answer)
        self._keep(f"{v.voucher_id}-r{v.revision}-{actor.value}.receipt.xml", receipt)
        if send_back:  # 退件: the preparer corrects what the stage pointed at and submits the next revision
            story.send_back = None
            story.send_backs += 1
            story.revisions += 1
            story.voucher = corrected(v, send_back.reason)
            story.step = "submit"
            return
        story.previous = signed
        story.stage += 1
        if story.stage == len(STAGES):
            story.step = "follow"
            story.due = time.monotonic() + self.poll_seconds

    def _follow(self, story: Story) -> None:
        v = story.voucher
        status, answer, _ = self._call("status", v.agency_code, "GET", f"/v1/vouchers/{v.voucher_id}")
        if status != 200:
            return self._unexpected(story, "status", status, answer)
        if answer.get("revision") != v.revision:
            return self._unexpected(story, "status", status, {"code": "revision-mismatch",
                                                               "detail": f"gateway shows {answer.get('revision')}"})
        state = answer.get("status")
        if state in WAITING:
            story.due = time.monotonic() + self.poll_seconds
            return
        if state == "rejected":  # the treasury sent it back (budget, duplicate guard): the agency is told why
            reason = next((h.get("reason_code") for h in reversed(answer.get("history", []))), None)
            return self._end(story, "treasury-rejected", str(reason))
        if state not in ("paid", "returned"):
            return self._unexpected(story, "status", status, {"code": f"unexpected-status-{state}"})
        mine = [p for p in answer.get("payments", []) if p.get("revision") == v.revision]
        self._reconcile(story, v, mine)
        paid = [p for p in mine if p.get("state") == "paid"]
        returned = [p for p in mine if p.get("state") == "returned"]
        story.paid_lines += len(paid)
        story.amount_paid += sum(p["amount"] for p in paid)
        story.paid.update((p["end_to_end_id"], p["amount"]) for p in paid)
        if state == "paid":
            return self._end(story, "paid")
        story.returned_lines += len(returned)
        if story.re_remittances >= MAX_RE_REMITTANCES:
            return self._end(story, "returned", ", ".join(sorted({str(p.get("reason_code")) for p in returned})))
        # 退匯: correct the accounts of the returned lines and send them again as the next revision
        story.re_remittances += 1
        story.revisions += 1
        story.voucher = re_remittance(v, [p["line"] for p in returned])
        story.step = "submit"

    def _reconcile(self, story: Story, v: Voucher, shown: list[dict]) -> None:
        """The agency's own books against the gateway's: every line it sent, by EndToEndId and amount."""
        mine = {end_to_end_id(v.agency_code, v.fiscal_year, v.voucher_number, v.revision, line.number): line.amount
                for line in v.lines}
        theirs = {p.get("end_to_end_id"): p.get("amount") for p in shown}
        with self._lock:
            self.report.reconciled += 1
            if mine != theirs:
                self.report.mismatches.append({"voucher_id": v.voucher_id, "revision": v.revision,
                                               "missing": sorted(set(mine) - set(theirs))[:5],
                                               "unknown": sorted(set(theirs) - set(mine))[:5],
                                               "amounts_differ": sorted(k for k in set(mine) & set(theirs)
                                                                        if mine[k] != theirs[k])[:5]})

    def _call_patiently(self, name: str, agency: str, path: str, attempts: int = 20) -> tuple[int, dict, bytes]:
        """A GET outside the pool: over the rate limit it waits as the gateway's Retry-After says, then asks
        again (``attempts`` times at most)."""
        for _ in range(attempts - 1):
            try:
                return self._call(name, agency, "GET", path)
            except Later as wait:
                time.sleep(wait.seconds)  # the gateway said when to come back
        try:
            return self._call(name, agency, "GET", path)
        except Later:
            return 429, {"code": "rate-limited"}, b""

    def _check_statements(self, stories: list[Story]) -> None:
        """Each agency downloads its statement (CSV) of the run's days and ticks off every line it was told was
        paid: the same EndToEndIds with the same amounts, and no payment of this run it does not know of."""
        import csv
        import io

        believed: dict[str, dict[str, int]] = collections.defaultdict(dict)
        ours: dict[str, set[str]] = collections.defaultdict(set)
        for story in stories:
            believed[story.plan.agency].update(story.paid)
            ours[story.plan.agency].add(story.voucher.voucher_id)
        first = self.today - datetime.timedelta(days=1)  # the bank books in its own (UTC) day
        last = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).date() + datetime.timedelta(days=1)
        for agency in sorted(ours):
            status, answer, body = self._call_patiently("statement", agency,
                                                        f"/v1/statements?from={first}&to={last}&format=csv")
            if status != 200:
                self.report.statement_mismatches.append({"agency": agency, "status": status,
                                                         "code": answer.get("code")})
                continue
            self._keep(f"statement-{agency}-{first}-{last}.csv", body)
            rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
            column = {name.split(" ")[-1].strip("()"): i for i, name in enumerate(rows[0])}
            shown: dict[str, int] = {}
            for row in rows[1:]:
                if len(row) == len(rows[0]) and row[column["entry"]] == "payment" \
                        and row[column["voucher_id"]] in ours[agency]:
                    shown[row[column["end_to_end_id"]]] = int(row[column["amount"]])
            self.report.statements += 1
            if shown != believed[agency]:
                self.report.statement_mismatches.append({
                    "agency": agency, "missing": sorted(set(believed[agency]) - set(shown))[:5],
                    "unknown": sorted(set(shown) - set(believed[agency]))[:5],
                    "amounts_differ": sorted(k for k in set(shown) & set(believed[agency])
                                             if shown[k] != believed[agency][k])[:5]})

    def _keep(self, name: str, data: bytes) -> None:
        if self.evidence is not None:
            (self.evidence / name).write_bytes(data)

    # --- the pool ------------------------------------------------------------------------------------------

    def run(self, *, vouchers: int | None = None, duration: float | None = None, settle_timeout: float = 300.0,
            progress: bool = False) -> AgencyReport:
        """Start stories until ``vouchers`` or ``duration``, then wait up to ``settle_timeout`` seconds for the
        started ones to end; stories still open then are reported ``unfinished``."""
        if vouchers is None and duration is None:
            raise ValueError("give vouchers or duration")
        if self.evidence is not None:
            self.evidence.mkdir(parents=True, exist_ok=True)
        self.report = AgencyReport(agencies=len(self.agencies))
        started = time.monotonic()
        stop_starting = started + duration if duration is not None else float("inf")
        heap: list[tuple[float, float, int, Story]] = []
        # open: started and not ended; active: open and not just waiting for the treasury or the bank
        state = {"next": 0, "open": 0, "active": 0, "deadline": None}
        max_active = self.concurrency * 2  # enough to keep every thread busy, few enough to finish what started
        stories: list[Story] = []
        bar = _progress_bar(vouchers, progress)

        def next_start() -> float | None:
            index = state["next"]
            if vouchers is not None and index >= vouchers:
                return None
            at = started + index / self.rate if self.rate > 0 else started
            return None if at >= stop_starting else at

        def take() -> Story | None:
            """The next due step (stories started earlier first), else a new story when one is due and fewer
            than ``max_active`` are being worked on; None when everything ended or the settle time is over."""
            with self._wake:
                while True:
                    now = time.monotonic()
                    start_at = next_start()
                    if state["deadline"] is None and start_at is None:
                        state["deadline"] = now + settle_timeout
                    if start_at is None and state["open"] == 0:
                        self._wake.notify_all()
                        return None
                    if state["deadline"] is not None and now > state["deadline"]:
                        return None
                    if heap and heap[0][0] <= now:
                        return heapq.heappop(heap)[3]
                    can_start = start_at is not None and state["active"] < max_active
                    if can_start and start_at <= now:
                        index = state["next"]
                        state["next"] += 1
                        state["open"] += 1
                        state["active"] += 1
                        break
                    waits = [t for t in (heap[0][0] if heap else None, start_at if can_start else None,
                                         state["deadline"]) if t is not None]
                    self._wake.wait(max(0.001, min(waits) - now) if waits else 1.0)
            with self._plan_lock:
                plan = self.plans.plan(index, self.today)
            at = time.monotonic()
            story = Story(plan, plan.voucher, due=at, order=at, send_back=plan.send_back, started=at)
            with self._lock:
                stories.append(story)
                self.report.started += 1
                self.report.kinds[plan.kind] += 1
                self.report.deputy_reviews += plan.deputy_reviews
            return story

        def worker() -> None:
            while True:
                story = take()
                if story is None:
                    return
                was_waiting = story.step == "follow"
                later = None
                try:
                    self._step(story)
                except Later as wait:
                    later = time.monotonic() + wait.seconds
                except Exception as exc:  # a simulator bug must end the story visibly, not hang the run
                    with self._lock:
                        self.report.unexpected.append({"voucher_id": story.voucher.voucher_id, "step": story.step,
                                                       "code": "simulator-error", "detail": repr(exc)[:200]})
                    self._end(story, "refused/simulator-error", repr(exc)[:200])
                waiting = story.step in ("follow", "done")
                with self._wake:
                    state["active"] += (was_waiting and not waiting) - (not was_waiting and waiting)
                    if story.step == "done":
                        state["open"] -= 1
                        if bar is not None:
                            bar.update(1)
                    else:
                        key = later or (story.due if story.step == "follow" else story.order)
                        heapq.heappush(heap, (key, story.order, id(story), story))
                    self._wake.notify_all()

        threads = [threading.Thread(target=worker, name=f"agency-{i}", daemon=True) for i in range(self.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if bar is not None:
            bar.close()
        with self._lock:
            for idle in self._idle.values():
                for conn in idle:
                    conn.close()
            self._idle.clear()
        report = self.report
        report.wall_seconds = time.monotonic() - started
        self._check_statements(stories)
        for story in stories:
            outcome = story.outcome or "unfinished"
            report.outcomes[outcome] += 1
            report.payments["paid"] += story.paid_lines
            report.payments["returned"] += story.returned_lines
            report.payments["re-remitted"] += story.returned_lines if outcome == "paid" else 0
            report.amount_paid += story.amount_paid
            report.send_backs += story.send_backs
            report.re_remittances += story.re_remittances
            report.revisions += story.revisions
            report.stories.append({"voucher_id": story.voucher.voucher_id, "kind": story.plan.kind,
                                   "revision": story.voucher.revision, "outcome": outcome, "detail": story.detail,
                                   "seconds": round((story.ended or time.monotonic()) - story.started, 2)})
        return report


def _progress_bar(total: int | None, wanted: bool):
    if not wanted:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="voucher", desc="vouchers final", dynamic_ncols=True)


def format_report(d: dict) -> str:
    """The end-of-run table, for people."""
    rows = [f"{d['vouchers']} vouchers from {d['agencies']} agencies in {d['wall_s']} s "
            f"({d['vouchers_per_s']} final/s)",
            "  by kind:     " + ", ".join(f"{k} {n}" for k, n in d["kinds"].items()),
            "  by outcome:  " + ", ".join(f"{k} {n}" for k, n in d["outcomes"].items()),
            "  payments:    " + ", ".join(f"{k} {n:,}" for k, n in d["payments"].items())
            + f"; NT${d['amount_paid']:,} paid",
            f"  people:      {d['send_backs']} sent back (退件) and corrected, {d['deputy_reviews']} reviewed by a "
            f"deputy, {d['re_remittances']} re-remittances after 退匯, {d['revisions']} revisions in all",
            f"  reconciled:  {d['reconciled_vouchers']} revisions against the gateway's payments, "
            f"{len(d['reconciliation_mismatches'])} mismatches; {d['statements']} statements (對帳單) against the "
            f"agencies' books, {len(d['statement_mismatches'])} mismatches",
            "",
            f"  {'API call':<10} {'count':>7} {'errors':>7} {'429s':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"]
    for call, a in d["api"].items():
        rows.append(f"  {call:<10} {a['count']:>7} {a['errors']:>7} {a['throttled']:>6} {a['p50_ms']:>8} "
                    f"{a['p95_ms']:>8} {a['p99_ms']:>8}")
    for item in d["unexpected"]:
        rows.append(f"  UNEXPECTED {item}")
    return "\n".join(rows)


# --- `vgw sim agency` ------------------------------------------------------------------------------------------

def _run(args: argparse.Namespace) -> int:
    import sys

    from simulators.agency_plans import allotments_csv

    urls = [urlsplit(gateway) for gateway in args.gateway]
    for url, given in zip(urls, args.gateway):
        if url.scheme != "https" or not url.hostname or not url.port:
            raise CliError(f"--gateway must be https://HOST:PORT, got {given!r}")
    url = urls[0]
    if args.vouchers is None and args.duration is None and not args.write_allotments:
        raise CliError("give --vouchers N or --duration SECONDS")
    if args.concurrency < 1 or args.rate < 0:
        raise CliError("--concurrency must be at least 1 and --rate not negative")
    mix = Mix(payroll=args.payroll_share, subsidy=args.subsidy_share, deputy=args.deputy_share,
              send_back=args.send_back_rate)
    try:
        sim = AgencySimulator(Path(args.pki), url.hostname, url.port, agencies=args.agency or None, seed=args.seed,
                              run_tag=args.run_tag, mix=mix, concurrency=args.concurrency, rate=args.rate,
                              poll_seconds=args.poll_seconds,
                              evidence=Path(args.evidence) if args.evidence else None,
                              more_gateways=tuple((u.hostname, u.port) for u in urls[1:]))
    except (OSError, ValueError, KeyError) as exc:
        raise CliError(f"cannot start the agency simulator: {exc}") from None
    if args.write_allotments:
        Path(args.write_allotments).write_text(allotments_csv(sim.agencies, sim.today), encoding="utf-8")
        return 0
    report = sim.run(vouchers=args.vouchers, duration=args.duration, settle_timeout=args.settle_timeout,
                     progress=args.progress if args.progress is not None else sys.stderr.isatty())
    d = report.as_dict()
    if args.stories:
        d["stories"] = report.stories
    print(json.dumps(d, ensure_ascii=False, indent=2) if args.json else format_report(d), flush=True)
    return 0 if report.ok else 1


def register(registry) -> None:
    p = registry.command("sim", "agency", handler=_run,
                         help="simulated agencies: prepare, sign, submit, approve stage by stage, follow to paid "
                              "or returned, re-remit; a table (or --json) at the end")
    p.add_argument("--gateway", required=True, action="append", metavar="https://HOST:PORT",
                   help="the gateway; repeat it for gateways on one store: agencies are split across them and "
                        "fail over to the next when theirs gives no answer")
    p.add_argument("--pki", required=True, metavar="DIR", help="a `vgw pki init` folder (agencies' TLS certs, people)")
    p.add_argument("--agency", action="append", metavar="CODE", help="only this agency (repeatable; default: all)")
    p.add_argument("--vouchers", type=int, help="start this many vouchers")
    p.add_argument("--duration", type=float, help="start vouchers for this many seconds")
    p.add_argument("--rate", type=float, default=0.0, help="new vouchers per second (default 0: as fast as it goes)")
    p.add_argument("--concurrency", type=int, default=4, help="API calls in flight at once (default 4)")
    p.add_argument("--settle-timeout", type=float, default=300.0,
                   help="seconds to wait for started vouchers to end after the last start (default 300)")
    p.add_argument("--poll-seconds", type=float, default=1.0, help="how often a released voucher is looked up")
    p.add_argument("--payroll-share", type=float, default=0.01, help="share of payroll vouchers (100-800 lines)")
    p.add_argument("--subsidy-share", type=float, default=0.10, help="share of subsidy vouchers (5-30 lines)")
    p.add_argument("--deputy-share", type=float, default=0.10, help="share reviewed by the deputy")
    p.add_argument("--send-back-rate", type=float, default=0.05, help="share sent back by a stage and corrected")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-tag", help="1-5 of [0-9A-Z] in every voucher number (default: random per run)")
    p.add_argument("--evidence", metavar="DIR", help="keep the signed vouchers, actions and receipts here")
    p.add_argument("--write-allotments", metavar="FILE",
                   help="only write the allotments CSV these agencies need (for `vgw budget load`) and exit")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--stories", action="store_true", help="with --json: also list every voucher's outcome")
    progress = p.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show a progress bar (default: when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
