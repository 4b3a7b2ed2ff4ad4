"""``vgw bench intake``: accepted vouchers per second over real mTLS, next to the in-process ceiling.

One run does it all on this machine: a test PKI, N distinct signed ~3 KB vouchers (the same "3 KB voucher"
as ``vgw bench verify``), a real ``vgw serve --workers W`` on SQLite as a subprocess, and a separate client
process (``simulators.bench.intake_load_client``) posting them over C keep-alive connections. Printed as JSON:
accepted/s, latency percentiles, the count by status, CPU per request of the gateway and of the client,
and the ceiling measured in the same run WITH THE SAME PARALLELISM as the gateway.

The ceiling is what intake cannot do without, in-process, without HTTP or TLS: ``check_signed_voucher``
(parse, XSD, signature, chain, revocation, registry, rules) and one ``record_intake`` commit. It runs in W
processes at once (W = the gateway's worker count), each looping over its own share of the vouchers and
committing into ONE shared SQLite store (WAL, synchronous=FULL, like the gateway's), so the commits
serialise across processes as the gateway workers' do; ``ceiling_per_s`` is the sum of the W processes'
rates. Beside it, ``service_in_process_per_s`` runs the gateway's whole intake use case the same way
(client certificate check, history read, receipt built and signed, commit), so the report shows how much of
the gap is the service and how much HTTP/TLS. Each process times both alternately voucher by voucher, half
of the vouchers before the HTTP run and half after, so drift on this shared machine hits them alike.

``--rate R`` adds a paced phase on fresh vouchers at R requests/s (``--rate half``: half the accepted/s the
saturated phase measured), reporting its p99 counted from when each request was due.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from adapters.command_line import CliError
from gateway.intake.receipts import new_receipt_id
from gateway.store import received_intake
from gateway.trust.roles import Role
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.check import check_signed_voucher
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.bench.common import machine, voucher_of_size
from simulators.bench.intake_load_client import write_bodies
from simulators.pki.authority import IssueOptions, Profile, name, new_key
from simulators.pki.layout import GATEWAY_KEY_KINDS, agency_code, init_pki, load_authority, load_cert, load_key
from simulators.served_gateway import ServedGateway
from simulators.voucher_factory import VoucherFactory


def _sign_vouchers(factory: VoucherFactory, count: int, lines: int, key, cert, now) -> list[bytes]:
    return [sign_document(voucher_to_xml(factory.voucher(agency_code(0), today=now.date(), lines=lines)),
                          key, cert, now) for _ in range(count)]


class InProcess:
    """The ceiling and the in-process service, each with its own SQLite store."""

    def __init__(self, pki: Path, work: Path, now: datetime.datetime) -> None:
        from adapters.serve.bootstrap import PlatformConfig, build_platform
        from adapters.services.intake import IntakeService
        from adapters.storage.factory import open_store

        self.now = now
        self.banks = BankDirectory.shipped()
        self.platform = build_platform(PlatformConfig.from_pki_dir(pki))
        self.ceiling_store = open_store(f"sqlite:///{work / 'ceiling.sqlite3'}")
        self.service_store = open_store(f"sqlite:///{work / 'service.sqlite3'}")
        self.client_cert = load_cert(pki / "agencies" / agency_code(0) / "tls/cert.pem")
        self.service = IntakeService(platform=self.platform, banks=self.banks, store=self.service_store,
                                     gateway_key=load_key(pki / "gateway/key.pem"),
                                     gateway_cert=load_cert(pki / "gateway/cert.pem"))

    def ceiling(self, body: bytes) -> None:
        """Parse + verify + validate + commit: the least an intake must do."""
        verified = check_signed_voucher(body, platform=self.platform, banks=self.banks, role=Role.PREPARER,
                                        now=self.now)
        voucher = verified.voucher
        receipt_id = new_receipt_id(voucher.voucher_id, voucher.revision, verified.received_sha256)
        # No receipt is signed here: the ceiling is what any intake must do, and a receipt is our choice.
        self.ceiling_store.record_intake(*received_intake(verified, body=body, agency=voucher.agency_code,
                                                          at=self.now, receipt_id=receipt_id, receipt_xml=b""))

    def service_call(self, body: bytes) -> None:
        answer = self.service.submit_voucher(body, self.client_cert)
        if answer.status != 202:
            raise AssertionError(f"the in-process service answered {answer.status}: {answer.body[:300]!r}")

    def spend(self, bodies: list[bytes]) -> dict[str, float]:
        """Seconds spent in each over ``bodies``, timed alternately voucher by voucher: wall time (per-call
        perf_counter) under the measure's name, and this process's CPU time under ``NAME_cpu``."""
        spent = {"ceiling": 0.0, "service": 0.0, "ceiling_cpu": 0.0, "service_cpu": 0.0}
        for body in bodies:
            for measure, call in (("ceiling", self.ceiling), ("service", self.service_call)):
                start, cpu = time.perf_counter(), time.process_time()
                call(body)
                spent[measure] += time.perf_counter() - start
                spent[measure + "_cpu"] += time.process_time() - cpu
        return spent

    def close(self) -> None:
        self.ceiling_store.close()
        self.service_store.close()


def _in_process_loop(conn, pki: Path, work: Path, now: datetime.datetime) -> None:
    """One ceiling process: build an InProcess, then time every share of vouchers it is sent."""
    in_process = InProcess(pki, work, now)
    try:
        while (bodies := conn.recv()) is not None:
            conn.send(in_process.spend(bodies))
    finally:
        in_process.close()


class InProcessPool:
    """``processes`` InProcess each in a process of its own (spawned, so nothing is inherited mid-flight),
    sharing the ceiling's and the service's SQLite files, as the gateway's workers share theirs."""

    def __init__(self, processes: int, pki: Path, work: Path, now: datetime.datetime) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns, self.processes = [], []
        for _ in range(processes):
            ours, theirs = context.Pipe()
            process = context.Process(target=_in_process_loop, args=(theirs, pki, work, now), daemon=True)
            process.start()
            self.conns.append(ours)
            self.processes.append(process)

    def measure(self, bodies: list[bytes]) -> dict[str, list[float]]:
        """Each process gets every n-th voucher at once; per process, calls per second of each measure."""
        shares = [bodies[i::len(self.conns)] for i in range(len(self.conns))]
        for conn, share in zip(self.conns, shares):
            conn.send(share)
        rates: dict[str, list[float]] = {"ceiling": [], "service": [], "ceiling_cpu": [], "service_cpu": []}
        for conn, share in zip(self.conns, shares):
            spent = conn.recv()
            for measure in rates:
                rates[measure].append(len(share) / spent[measure])
        return rates


    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for process in self.processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()


def _post(work: Path, name: str, pki: Path, port: int, bodies: list[bytes], warmup: int, concurrency: int,
          rate: float | None) -> dict:
    """Run the client process over ``bodies`` (the first ``warmup`` untimed) and return its summary."""
    write_bodies(work / f"{name}.bin", bodies)
    tls = pki / "agencies" / agency_code(0) / "tls"
    spec = {"port": port, "cafile": str(pki / "root/cert.pem"), "cert": str(tls / "cert.pem"),
            "key": str(tls / "key.pem"), "bodies": str(work / f"{name}.bin"), "warmup": warmup,
            "concurrency": concurrency, "rate": rate}
    (work / f"{name}.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-m", "simulators.bench.intake_load_client", str(work / f"{name}.json")],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"the load client failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def receipt_signing_ms(pki: Path, now: datetime.datetime, rounds: int = 200) -> dict[str, float]:
    """CPU milliseconds to sign one receipt with the PKI's gateway key and with an RSA-2048 key from the same
    CA: what choosing ECDSA P-256 for the gateway (the ``vgw pki init`` default) saves per accepted voucher."""
    from gateway.intake.receipts import Receipt, sign_receipt

    receipt = Receipt(receipt_id="R-" + "0" * 32, voucher_id=f"{agency_code(0)}-115-BENCH1", revision=1,
                      agency=agency_code(0), received_sha256="0" * 64, received_at=now, signer_serial="1",
                      signer_issuer="CN=bench", signer_role=Role.PREPARER)
    ca = load_authority(pki, "intermediate")
    rsa_key = new_key("rsa")
    rsa_cert = ca.issue(name(cn="localhost", o="bench"), rsa_key.public_key(), Profile.SERVICE,
                        IssueOptions(now - datetime.timedelta(days=1), now + datetime.timedelta(days=1)))
    gateway_key = load_key(pki / "gateway/key.pem")
    gateway_label = "ecdsa_p256" if isinstance(gateway_key, ec.EllipticCurvePrivateKey) else "gateway_rsa"
    keys = {gateway_label: (gateway_key, load_cert(pki / "gateway/cert.pem")), "rsa_2048": (rsa_key, rsa_cert)}
    costs = {}
    for label, (key, cert) in keys.items():
        for _ in range(10):
            sign_receipt(receipt, key, cert, now)
        started = time.process_time()
        for _ in range(rounds):
            sign_receipt(receipt, key, cert, now)
        costs[label] = round((time.process_time() - started) / rounds * 1000, 3)
    return costs


def bench_intake(count: int = 2000, concurrency: int = 8, rate: str | None = None, threads: int = 1,
                 workers: int = 2, size: int = 3000, gateway_key: str = "ec") -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    warmup = 2 * concurrency
    with tempfile.TemporaryDirectory(prefix="vgw-bench-intake-") as tmp:
        work = Path(tmp)
        pki = work / "pki"
        init_pki(pki, agencies=1, now=now, gateway_key=gateway_key)
        person = pki / "agencies" / agency_code(0) / "people" / "preparer"
        key, cert = load_key(person / "key.pem"), load_cert(person / "cert.pem")
        factory = VoucherFactory(BankDirectory.shipped(), seed=42)
        sample = voucher_of_size(factory, size, now)
        started = time.perf_counter()
        bodies = _sign_vouchers(factory, warmup + count, len(sample.lines), key, cert, now)
        paced_bodies = _sign_vouchers(factory, warmup + count, len(sample.lines), key, cert, now) if rate else []
        signing_s = time.perf_counter() - started
        signing_costs = receipt_signing_ms(pki, now)

        in_process = InProcessPool(workers, pki, work, now)
        try:
            in_process.measure(bodies[:warmup])  # chain, CRL, schema, XPath caches; SQLite files created
            half = count // 2
            before = in_process.measure(bodies[warmup:warmup + half])
            gateway = ServedGateway(pki, f"sqlite:///{work / 'gateway.sqlite3'}", work / "serve.log", threads=threads,
                                    workers=workers)
            try:
                cpu_before = gateway.cpu_seconds()
                saturated = _post(work, "saturated", pki, gateway.port, bodies, warmup, concurrency, None)
                cpu_after = gateway.cpu_seconds()
                if cpu_before is not None and cpu_after is not None:
                    # includes the untimed warm-up requests, so a little more than the timed ones cost
                    saturated["gateway_cpu_ms_per_request"] = round(
                        (cpu_after - cpu_before) * 1000 / (warmup + saturated["requests"]), 2)
                paced = None
                if rate:
                    pace = saturated["accepted_per_s"] / 2 if rate == "half" else float(rate)
                    paced = _post(work, "paced", pki, gateway.port, paced_bodies, warmup, concurrency, pace)
            finally:
                gateway.stop()
            after = in_process.measure(bodies[warmup + half:])
        finally:
            in_process.close()

    def summed(phase: dict, measure: str) -> float:
        return sum(phase[measure])

    def cpu_ms(first: dict, second: dict, measure: str) -> float:
        return round(1000 / statistics.mean(first[measure] + second[measure]), 2)

    ceiling = statistics.mean([summed(before, "ceiling"), summed(after, "ceiling")])
    service = statistics.mean([summed(before, "service"), summed(after, "service")])
    result: dict = {
        "benchmark": "intake", "machine": machine(), "vouchers": count, "concurrency": concurrency,
        "gateway_workers": workers, "gateway_threads": threads, "gateway_key": gateway_key,
        "gateway_threads_meaning": "per worker process", "store": "sqlite (WAL, synchronous=FULL)",
        "voucher_bytes": len(voucher_to_xml(sample)), "signed_bytes": round(statistics.mean(map(len, bodies))),
        "lines": len(sample.lines), "signing_s": round(signing_s, 1),
        "https": saturated,
        "ceiling_measure": f"parse + verify + validate + commit in {workers} processes at once (as many as the "
                           "gateway's workers), one shared SQLite store, no HTTP/TLS/receipt; per-process rates "
                           "summed",
        "ceiling_per_s": round(ceiling, 1),
        "ceiling_before_after_per_s": [round(summed(before, "ceiling"), 1), round(summed(after, "ceiling"), 1)],
        "ceiling_per_process_per_s": [round(statistics.mean(pair), 1)
                                      for pair in zip(before["ceiling"], after["ceiling"])],
        "ratio": round(saturated["accepted_per_s"] / ceiling, 3),
        "ratio_meaning": "https.accepted_per_s / ceiling_per_s, both with the same number of processes",
        "service_in_process_per_s": round(service, 1),
        "service_before_after_per_s": [round(summed(before, "service"), 1), round(summed(after, "service"), 1)],
        # CPU per voucher does not depend on what else this shared machine runs, unlike the rates above:
        # with https.gateway_cpu_ms_per_request it says where the bound is (cores x 1000 / ms per voucher).
        "ceiling_cpu_ms_per_voucher": cpu_ms(before, after, "ceiling_cpu"),
        "service_cpu_ms_per_voucher": cpu_ms(before, after, "service_cpu"),
        "receipt_signing_cpu_ms": signing_costs,
    }
    gateway_cpu = saturated.get("gateway_cpu_ms_per_request")
    if gateway_cpu is not None:
        result["cpu_ratio"] = round(result["ceiling_cpu_ms_per_voucher"]
                                    / (gateway_cpu + saturated["client_cpu_ms_per_request"]), 3)
        result["cpu_ratio_meaning"] = ("ceiling_cpu_ms_per_voucher / (https.gateway_cpu_ms_per_request + "
                                       "https.client_cpu_ms_per_request): what ratio would be if both were bound "
                                       "by this machine's cores alone; unlike ratio, it does not move with what "
                                       "else the machine runs meanwhile")
    if paced is not None:
        result["paced"] = paced
    return result


def _intake_cmd(args) -> int:

    if args.count < 1 or args.concurrency < 1 or args.threads < 1 or args.workers < 1:
        raise CliError("--count, --concurrency, --threads and --workers must be at least 1")
    if args.rate is not None and args.rate != "half":
        try:
            if float(args.rate) <= 0:
                raise ValueError
        except ValueError:
            raise CliError("--rate is a positive number of requests per second, or 'half'") from None
    print(json.dumps(bench_intake(count=args.count, concurrency=args.concurrency, rate=args.rate,
                                  threads=args.threads, workers=args.workers, gateway_key=args.gateway_key),
                     ensure_ascii=False, indent=2))
    return 0


def register(registry) -> None:
    p = registry.command("bench", "intake", help="accepted vouchers/s over HTTPS+mTLS vs the in-process ceiling "
                         "(JSON)", handler=_intake_cmd, group_help="benchmarks, printing JSON")
    p.add_argument("--count", type=int, default=2000, help="distinct signed 3 KB vouchers to post (default 2000)")
    p.add_argument("--concurrency", type=int, default=8, help="keep-alive client connections (default 8)")
    p.add_argument("--rate", help="also a paced run at R requests/s on fresh vouchers; 'half' = half the "
                   "accepted/s just measured")
    p.add_argument("--workers", type=int, default=2, help="gateway worker processes (vgw serve --workers), and as "
                   "many ceiling processes (default 2, one per core here)")
    p.add_argument("--threads", type=int, default=1, help="threads per gateway process (default 1: measured best "
                   "here, more threads in one process mostly contend for its GIL)")
    p.add_argument("--gateway-key", choices=GATEWAY_KEY_KINDS, default="ec",
                   help="the gateway's key, which signs every receipt (default ec: ECDSA P-256)")
