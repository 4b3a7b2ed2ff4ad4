"""``vgw bench approvals``: signed approval actions accepted per second over real mTLS, next to the in-process
ceiling (issue 4).

One run does it all on this machine: a test PKI; N + warm-up distinct signed ~3 KB vouchers (the "3 KB
voucher" of ``vgw bench verify``); for each voucher the four approval actions (reviewer, accountant, head,
releaser) signed by that agency's people, each naming the SHA-256 of the previous signed document as
``vgw action sign`` does. All of it is signed BEFORE anything is timed: signing is the agencies' cost, not the
gateway's. The vouchers' budget keys get allotments (``vgw budget load``) covering them, so each release
passes the treasury checks the gateway runs right after it, as an agency's normally does (``final_status``
counts where the vouchers ended). Then a real ``vgw serve`` as a subprocess takes the vouchers, and a
separate client process (:mod:`simulators.bench.approvals_load_client`) posts the actions over C keep-alive mTLS
connections, stage by stage (an action is accepted only after the previous stage's), concurrently within a
stage. Every answer must be 202, and the gateway's store must hold each voucher's four actions, the
releaser's moving it to ``released``; anything else is an error, reported, and makes the command exit 1.

``actions_per_s`` is the accepted timed actions over the sum of the four stages' wall times (first request
sent to last answer of each stage, warm-up excluded); the latency percentiles are over those same requests.

The ceiling is what accepting an action cannot do without, in-process and single-threaded, with no HTTP, TLS
or receipt: :func:`gateway.workflow.actions.check_signed_action` (hardened parse, XSD, signature profile and
verification, chain, revocation, registry) + :func:`gateway.workflow.approvals.decide_action` on the revision's flow
(held in memory from the previous step, not read back from the store) + one ``apply_workflow`` commit of
the rows the service writes (the action, the status compare-and-set, the audit entry; an empty receipt) into
a store of the same kind as the gateway's. Beside it, ``service_in_process_actions_per_s`` runs the gateway's
whole approval use case in-process (:meth:`adapters.services.actions.ActionService.submit_action`: client
certificate, flow read from the store, decision, signed receipt, commit, and after a release the treasury
checks, wired as ``vgw serve`` wires them) on a third store, so the report shows how much of the gap is the
service and how much HTTP/TLS. Both are timed alternately action by action, on the same action bytes as the
gateway got, for half of the vouchers before the HTTP run and half after, so drift on this shared machine
hits them alike.

``--store postgresql://…`` runs the gateway, the ceiling and the service on that server, each in a fresh
schema of its own, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from adapters.command_line import CliError
from gateway.intake.receipts import new_receipt_id
from gateway.store import ActionRecord, AuditEvent, StatusChange, WorkflowWrite, actor_of, received_intake
from gateway.trust.roles import Role
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.check import check_signed_voucher
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.workflow.actions import Action, Decision, VerifiedAction, action_element, check_signed_action
from gateway.workflow.approvals import Flow, Step, decide_action, flow_of
from gateway.workflow.transitions import Actor
from gateway.xmlsec.signing import sign_document
from simulators.bench.common import machine, voucher_of_size
from simulators.bench.intake_load_client import write_bodies
from simulators.pki.layout import agency_code, init_pki, load_cert, load_key
from simulators.served_gateway import ServedGateway
from simulators.voucher_factory import VoucherFactory

STAGES = (Actor.REVIEWER, Actor.ACCOUNTANT, Actor.HEAD, Actor.RELEASER)
RELEASED = "released"
SQLITE_LABEL = "sqlite (WAL, synchronous=FULL)"


# --- the signed documents ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Signed:
    """The vouchers as they will be submitted, and per stage the signed action on each, in voucher order."""

    vouchers: list[bytes]
    voucher_ids: list[str]
    actions: dict[Actor, list[bytes]]
    allotments: dict[tuple[str, int, str], int] = field(default_factory=dict)
    """Per budget key (agency, ROC fiscal year, subject), the vouchers' control totals summed."""


def sign_everything(pki: Path, count: int, size: int, now: datetime.datetime) -> Signed:
    """``count`` distinct signed vouchers of ``size`` bytes and their four approvals, chained as the agencies'
    tools chain them: the reviewer names the voucher's SHA-256, every later stage the previous action's."""
    people = pki / "agencies" / agency_code(0) / "people"
    signers = {role: (load_key(people / role / "key.pem"), load_cert(people / role / "cert.pem"))
               for role in ("preparer", *(stage.value for stage in STAGES))}
    factory = VoucherFactory(BankDirectory.shipped(), seed=42)
    lines = len(voucher_of_size(factory, size, now).lines)
    at = now.replace(microsecond=0)  # the action's SigningTime and the signature's, to the second
    vouchers, ids, allotments = [], [], {}
    for _ in range(count):
        voucher = factory.voucher(agency_code(0), today=now.date(), lines=lines)
        vouchers.append(sign_document(voucher_to_xml(voucher), *signers["preparer"], at))
        ids.append(voucher.voucher_id)
        key = (voucher.agency_code, voucher.fiscal_year, voucher.budget_subject)
        allotments[key] = allotments.get(key, 0) + voucher.total_amount
    voucher_sha256 = [hashlib.sha256(body).hexdigest() for body in vouchers]
    previous = list(voucher_sha256)
    actions: dict[Actor, list[bytes]] = {}
    for stage in STAGES:
        signed = []
        for i, voucher_id in enumerate(ids):
            action = Action(voucher_id=voucher_id, revision=1, voucher_sha256=voucher_sha256[i],
                            previous_sha256=previous[i], stage=stage, decision=Decision.APPROVE, signing_time=at)
            signed.append(sign_document(action_element(action), *signers[stage.value], at))
            previous[i] = hashlib.sha256(signed[-1]).hexdigest()
        actions[stage] = signed
    return Signed(vouchers, ids, actions, allotments)


# --- stores -----------------------------------------------------------------------------------------------------

def _with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-c search_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))  # %20, not +: libpq wants it


@contextlib.contextmanager
def bench_stores(store: str | None, work: Path):
    """(label, {"gateway": url, "ceiling": url, "service": url}): fresh stores of one kind, removed afterwards.

    No ``store``: SQLite files in ``work``, removed with it. ``sqlite:///PATH``: the gateway's at PATH (which
    must not exist yet), the other two beside it on the same disk, all kept. ``postgresql://…``: three fresh
    schemas in that database, dropped afterwards.
    """
    if store is None or store.lower().startswith("sqlite:"):
        base = work / "gateway.sqlite3"
        if store is not None:
            from adapters.storage.factory import sqlite_path

            base = Path(sqlite_path(store)).resolve()
            if not base.parent.is_dir():
                raise ValueError(f"{base.parent} is not a directory")
        files = {"gateway": base, "ceiling": base.with_name(base.name + "-ceiling"),
                 "service": base.with_name(base.name + "-service")}
        for path in files.values():
            if path.exists():
                raise ValueError(f"{path} exists: the benchmark needs stores of its own")
        yield SQLITE_LABEL, {name: f"sqlite:///{path}" for name, path in files.items()}
        return
    if not store.lower().startswith(("postgresql:", "postgres:")):
        raise ValueError("--store is sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE")
    import psycopg
    from psycopg import sql

    prefix = f"vgw_bench_{uuid.uuid4().hex[:10]}"
    schemas = {name: f"{prefix}_{name}" for name in ("gateway", "ceiling", "service")}
    with psycopg.connect(store, autocommit=True) as admin:
        for schema in schemas.values():
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        parts = urlsplit(store)
        label = f"postgresql ({parts.hostname}:{parts.port or 5432}{parts.path}, fresh schemas {prefix}_*)"
        yield label, {name: _with_search_path(store, schema) for name, schema in schemas.items()}
    finally:
        with psycopg.connect(store, autocommit=True) as admin:
            for schema in schemas.values():
                admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def load_allotments(store_url: str, allotments: dict[tuple[str, int, str], int], work: Path) -> None:
    """Allot every voucher's budget key what its vouchers total, with ``vgw budget load``: released vouchers
    then pass the treasury checks, as an agency's normally do, instead of being sent back for want of one."""
    csv_file = work / "allotments.csv"
    csv_file.write_text("agency,fiscal_year,budget_subject,amount\n" + "".join(
        f"{agency},{year},{subject},{amount}\n" for (agency, year, subject), amount in sorted(allotments.items())),
        encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "adapters.cli", "budget", "load", "--store", store_url,
                           "--operator", "vgw-bench", str(csv_file)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"vgw budget load failed: {done.stderr[-2000:]}")


# --- the ceiling and the in-process service -----------------------------------------------------------------------

def bare_write(flow: Flow, verified: VerifiedAction, step: Step, at: datetime.datetime, body: bytes) -> WorkflowWrite:
    """The rows :class:`adapters.services.actions.ActionService` commits for an approval (the action, the status
    compare-and-set, the audit entry), with an empty receipt: the ceiling signs none, as intake's does not."""
    action, signer, row = verified.action, verified.signer, step.transition
    receipt_id = new_receipt_id(flow.voucher_id, flow.revision, verified.received_sha256)
    stored = ActionRecord(
        voucher_id=flow.voucher_id, revision=flow.revision, stage=action.stage.value, agency=flow.agency,
        decision=action.decision.value, action_sha256=verified.received_sha256, action_bytes=body,
        signed_at=action.signing_time, received_at=at, person=step.grant.person, key_sha256=signer.key_sha256,
        certificate=actor_of(signer), grant_kind=step.grant.kind.value, receipt_id=receipt_id, receipt_xml=b"",
        status_after=row.target.value)
    change = StatusChange(flow.voucher_id, flow.revision, expected_status=flow.status.value,
                          expected_chain=flow.chain_head, new_status=row.target.value,
                          new_chain=verified.received_sha256, at=at)
    event = AuditEvent(at=at, actor=actor_of(signer), action=f"action.{action.decision.value}",
                       subject=f"{flow.voucher_id}#{flow.revision}", document_sha256=verified.received_sha256,
                       detail={"role": action.stage.value, "decision": action.decision.value,
                               "status": row.target.value, "from": row.source.value, "person": step.grant.person,
                               "grant": step.grant.kind.value, "receipt_id": receipt_id})
    return WorkflowWrite(changes=(change,), events=(event,), action=stored)


class InProcess:
    """The ceiling and the whole approval service, in this process, each on a store of its own."""

    def __init__(self, pki: Path, ceiling_url: str, service_url: str, now: datetime.datetime) -> None:
        from adapters.serve.bootstrap import PlatformConfig, build_platform
        from adapters.services.actions import ActionService
        from adapters.services.intake import IntakeService
        from adapters.services.treasury import TreasuryService, check_after_release
        from adapters.storage.factory import open_store

        self.now = now
        self.banks = BankDirectory.shipped()
        self.platform = build_platform(PlatformConfig.from_pki_dir(pki))
        self.ceiling_store = open_store(ceiling_url)
        self.service_store = open_store(service_url)
        self.client_cert = load_cert(pki / "agencies" / agency_code(0) / "tls/cert.pem")
        self.intake = IntakeService(platform=self.platform, banks=self.banks, store=self.service_store,
                                    gateway_key=load_key(pki / "gateway/key.pem"),
                                    gateway_cert=load_cert(pki / "gateway/cert.pem"))
        # as `vgw serve` wires it: a release is checked by the treasury in the same call
        self.service = ActionService(intake=self.intake, store=self.service_store,
                                     after_commit=check_after_release(TreasuryService(self.service_store)))
        self.flows: dict[str, Flow] = {}

    def admit(self, vouchers: list[bytes]) -> None:
        """Untimed: the vouchers into both stores (the ceiling's without a receipt, as bench intake's)."""
        for body in vouchers:
            verified = check_signed_voucher(body, platform=self.platform, banks=self.banks, role=Role.PREPARER,
                                            now=self.now)
            voucher = verified.voucher
            receipt_id = new_receipt_id(voucher.voucher_id, voucher.revision, verified.received_sha256)
            record = self.ceiling_store.record_intake(*received_intake(
                verified, body=body, agency=voucher.agency_code, at=self.now, receipt_id=receipt_id,
                receipt_xml=b""))
            self.flows[record.voucher_id] = flow_of(record, [])
            answer = self.intake.submit_voucher(body, self.client_cert)
            if answer.status != 202:
                raise AssertionError(f"the in-process intake answered {answer.status}: {answer.body[:300]!r}")

    def ceiling(self, body: bytes) -> None:
        """check_signed_action + decide_action + one commit: the least accepting an action takes."""
        verified = check_signed_action(body, platform=self.platform, now=self.now)
        flow = self.flows[verified.action.voucher_id]
        step = decide_action(flow, verified, self.platform.registry)
        self.ceiling_store.apply_workflow(bare_write(flow, verified, step, self.now, body))
        self.flows[flow.voucher_id] = step.flow

    def service_call(self, voucher_id: str, body: bytes) -> None:
        answer = self.service.submit_action(voucher_id, body, self.client_cert)
        if answer.status != 202:
            raise AssertionError(f"the in-process service answered {answer.status}: {answer.body[:300]!r}")

    def spend(self, signed: Signed, indexes: range) -> dict[str, float]:
        """Seconds spent in each over the actions of the vouchers at ``indexes``, stage by stage, timed
        alternately action by action (per-call perf_counter)."""
        spent = {"ceiling": 0.0, "service": 0.0}
        for stage in STAGES:
            for i in indexes:
                body = signed.actions[stage][i]
                start = time.perf_counter()
                self.ceiling(body)
                spent["ceiling"] += time.perf_counter() - start
                start = time.perf_counter()
                self.service_call(signed.voucher_ids[i], body)
                spent["service"] += time.perf_counter() - start
        return spent

    def close(self) -> None:
        self.ceiling_store.close()
        self.service_store.close()


# --- over HTTPS -------------------------------------------------------------------------------------------------

def _post(work: Path, name: str, pki: Path, port: int, connections: int, phases: list[dict],
          total_of: list[str]) -> dict:
    """Run the client process over ``phases`` (each: name, bodies, paths, warmup) and return its summary."""
    spec_phases = []
    for phase in phases:
        bodies_file = work / f"{name}-{phase['name']}.bin"
        write_bodies(bodies_file, phase["bodies"])
        spec_phases.append({"name": phase["name"], "bodies": str(bodies_file), "paths": phase["paths"],
                            "warmup": phase["warmup"]})
    tls = pki / "agencies" / agency_code(0) / "tls"
    spec = {"port": port, "cafile": str(pki / "root/cert.pem"), "cert": str(tls / "cert.pem"),
            "key": str(tls / "key.pem"), "connections": connections, "phases": spec_phases, "total_of": total_of}
    (work / f"{name}.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-m", "simulators.bench.approvals_load_client", str(work / f"{name}.json")],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"the load client failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _actions_path(voucher_id: str) -> str:
    return f"/v1/vouchers/{quote(voucher_id, safe='')}/actions"


def _stored_outcome(store_url: str, voucher_ids: list[str]) -> tuple[list[dict], dict[str, int]]:
    """Read from the gateway's store after it stopped: the vouchers that do not have the four actions stored
    with the releaser's ending in ``released``, and how many vouchers are in each status now (after a release
    the gateway may go on by itself, e.g. with treasury checks)."""
    from adapters.storage.factory import open_store

    store = open_store(store_url)
    try:
        wrong, statuses = [], {}
        for voucher_id in voucher_ids:
            record = store.get(voucher_id, 1)
            actions = store.actions(voucher_id, 1) if record is not None else []
            stages = [a.stage for a in actions]
            status = record.status if record is not None else None
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if stages != [s.value for s in STAGES] or actions[-1].status_after != RELEASED:
                wrong.append({"voucher_id": voucher_id, "status": status, "stages": stages})
        return wrong, dict(sorted(statuses.items()))
    finally:
        store.close()


@dataclass
class Run:
    """What one run measured, before it is reported."""

    workers: int
    threads: int
    connections: int
    vouchers: int
    warmup: int
    store: str
    signed: Signed
    signing_s: float
    intake: dict
    https: dict
    in_process: list[tuple[dict[str, float], int]]
    """(seconds spent per measure, actions timed) before the HTTP run and after it."""
    gateway_cpu_s: float | None
    incomplete: list[dict]
    final_status: dict[str, int]
    gateway_exit: int | None
    gateway_log_tail: str


def bench_approvals(vouchers: int = 300, connections: int = 4, workers: int = 1, threads: int = 8,
                    store: str | None = None, warmup: int | None = None, size: int = 3000) -> dict:
    started = time.perf_counter()
    now = datetime.datetime.now(datetime.timezone.utc)
    warmup = 2 * connections if warmup is None else warmup
    total = warmup + vouchers
    half = warmup + vouchers // 2
    with tempfile.TemporaryDirectory(prefix="vgw-bench-approvals-") as tmp, bench_stores(store, Path(tmp)) as (
            store_label, urls):
        work = Path(tmp)
        pki = work / "pki"
        init_pki(pki, agencies=1, now=now)
        signing_started = time.perf_counter()
        signed = sign_everything(pki, total, size, now)
        signing_s = time.perf_counter() - signing_started

        for name in ("gateway", "service"):  # the ceiling does no treasury checks
            load_allotments(urls[name], signed.allotments, work)
        in_process = InProcess(pki, urls["ceiling"], urls["service"], now)
        try:
            in_process.admit(signed.vouchers)
            in_process.spend(signed, range(warmup))  # chain, CRL, schema, XPath caches per signer, untimed
            before = in_process.spend(signed, range(warmup, half))
            gateway = ServedGateway(pki, urls["gateway"], work / "serve.log", workers=workers, threads=threads)
            try:
                intake = _post(work, "vouchers", pki, gateway.port, connections, [
                    {"name": "vouchers", "bodies": signed.vouchers, "paths": ["/v1/vouchers"] * total,
                     "warmup": warmup}], total_of=["vouchers"])
                cpu_before = gateway.cpu_seconds()
                https = _post(work, "actions", pki, gateway.port, connections, [
                    {"name": stage.value, "bodies": signed.actions[stage],
                     "paths": [_actions_path(v) for v in signed.voucher_ids], "warmup": warmup}
                    for stage in STAGES], total_of=[stage.value for stage in STAGES])
                cpu_after = gateway.cpu_seconds()
            finally:
                gateway_exit = gateway.stop()
            after = in_process.spend(signed, range(half, total))
        finally:
            in_process.close()
        incomplete, final_status = _stored_outcome(urls["gateway"], signed.voucher_ids)
        run = Run(workers=workers, threads=threads, connections=connections, vouchers=vouchers, warmup=warmup,
                  store=store_label, signed=signed, signing_s=signing_s, intake=intake, https=https,
                  in_process=[(before, (half - warmup) * len(STAGES)), (after, (total - half) * len(STAGES))],
                  gateway_cpu_s=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
                  incomplete=incomplete, final_status=final_status, gateway_exit=gateway_exit,
                  gateway_log_tail=gateway.log_tail(2000))
    result = report(run)
    result["run_s"] = round(time.perf_counter() - started, 1)
    return result


def _unexpected_count(phase: dict) -> int:
    both = [phase["by_status"], phase["warmup_by_status"]]
    return sum(n for counts in both for status, n in counts.items() if status != "202")


def report(run: Run) -> dict:
    """The JSON document of one run."""
    def rates(measure: str) -> list[float]:  # per half; with one voucher only the second half has any
        return [round(actions / spent[measure], 1) for spent, actions in run.in_process if actions]

    ceiling, service = statistics.mean(rates("ceiling")), statistics.mean(rates("service"))
    vouchers_phase = run.intake["phases"]["vouchers"]
    stages = {stage.value: run.https["phases"][stage.value] for stage in STAGES}
    total = run.https["total"]
    by_status: dict[str, int] = {}
    for phase in stages.values():
        for status, n in phase["by_status"].items():
            by_status[status] = by_status.get(status, 0) + n
    errors = (_unexpected_count(vouchers_phase) + sum(map(_unexpected_count, stages.values()))
              + len(run.incomplete))
    result: dict = {
        "benchmark": "approvals", "machine": machine(), "store": run.store,
        "workers": run.workers, "threads": run.threads, "threads_meaning": "per gateway worker process",
        "connections": run.connections,
        "vouchers": run.vouchers, "warmup_vouchers": run.warmup, "actions": total["requests"],
        "stages": list(stages),
        "voucher_bytes": round(statistics.mean(map(len, run.signed.vouchers))),
        "action_bytes": round(statistics.mean(len(a) for signed in run.signed.actions.values() for a in signed)),
        "signing_s": round(run.signing_s, 1),
        "actions_per_s": total["accepted_per_s"], "actions_wall_s": total["wall_s"],
        **{key: total["latency"].get(key) for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms")},
        "by_status": dict(sorted(by_status.items())),
        "errors": errors,
        "final_status": run.final_status,
        "by_stage": {name: {"accepted_per_s": phase["accepted_per_s"], "wall_s": phase["wall_s"],
                            **phase["latency"]} for name, phase in stages.items()},
        # includes the untimed warm-up actions, so a little more than the timed ones cost
        "gateway_cpu_ms_per_action": None if run.gateway_cpu_s is None else round(
            run.gateway_cpu_s * 1000 / (total["requests"] + run.warmup * len(STAGES)), 2),
        "client_cpu_ms_per_request": run.https["client_cpu_ms_per_request"],
        "ceiling_actions_per_s": round(ceiling, 1),
        "ceiling_before_after_per_s": rates("ceiling"),
        "ceiling_measure": "check_signed_action + decide_action (flow held in memory) + apply_workflow commit, one "
                           "thread in-process, same kind of store, no HTTP/TLS/receipt",
        "ratio": round(total["accepted_per_s"] / ceiling, 3),
        "ratio_meaning": f"actions_per_s (gateway with {run.workers} worker process"
                         f"{'es' if run.workers > 1 else ''}) / ceiling_actions_per_s (one thread)",
        "service_in_process_actions_per_s": round(service, 1),
        "service_before_after_per_s": rates("service"),
        "voucher_intake": {"accepted_per_s": vouchers_phase["accepted_per_s"],
                           "by_status": vouchers_phase["by_status"], **vouchers_phase["latency"]},
    }
    if errors:
        result["error_detail"] = {
            "unexpected_answers": {name: phase["unexpected"] for name, phase in
                                   [("vouchers", vouchers_phase), *stages.items()] if phase["unexpected"]},
            "incomplete_in_store": run.incomplete[:5], "incomplete_count": len(run.incomplete),
        }
    if run.gateway_exit not in (0, None):
        result["gateway_exit"] = run.gateway_exit
        result["gateway_log_tail"] = run.gateway_log_tail
    return result


def _approvals_cmd(args) -> int:

    if args.vouchers < 1 or args.connections < 1 or args.workers < 1 or args.threads < 1:
        raise CliError("--vouchers, --connections, --workers and --threads must be at least 1")
    if args.warmup is not None and args.warmup < 1:
        raise CliError("--warmup must be at least 1 (the first action of each stage warms that signer's caches)")
    try:
        result = bench_approvals(vouchers=args.vouchers, connections=args.connections, workers=args.workers,
                                 threads=args.threads, store=args.store, warmup=args.warmup)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if result["errors"]:
        print(f"vgw: bench approvals: {result['errors']} errors (answers other than 202, or vouchers "
              "without their four actions in the store); the figures above do not count", file=sys.stderr)
        return 1
    return 0


def register(registry) -> None:
    p = registry.command("bench", "approvals", help="signed approval actions accepted/s over HTTPS+mTLS vs the "
                         "in-process ceiling (JSON)", handler=_approvals_cmd, group_help="benchmarks, printing JSON")
    p.add_argument("--vouchers", type=int, default=300,
                   help="vouchers to submit and take through the four stages, timed (default 300)")
    p.add_argument("--connections", type=int, default=4, help="keep-alive client connections (default 4)")
    p.add_argument("--workers", type=int, default=1, help="gateway worker processes (vgw serve --workers; "
                   "default 1, so the ratio to the one-thread ceiling compares like with like)")
    p.add_argument("--threads", type=int, default=8, help="worker threads per gateway process (default 8, "
                   "vgw serve's)")
    p.add_argument("--store", help="sqlite:///PATH (must not exist; kept, with the ceiling's and the service's "
                   "beside it) or postgresql://USER@HOST:PORT/DATABASE (three fresh schemas, dropped afterwards); "
                   "default: SQLite in a temporary directory")
    p.add_argument("--warmup", type=int, help="extra vouchers whose actions are posted first in each stage, "
                   "untimed (default: 2 per connection)")
