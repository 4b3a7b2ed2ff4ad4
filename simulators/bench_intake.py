"""``vgw bench intake``: accepted vouchers per second over real mTLS, next to the bare in-process ceiling.

One run does it all on this machine: a test PKI, N distinct signed ~3 KB vouchers (the same "3 KB voucher"
as ``vgw bench verify``), a real ``vgw serve`` on SQLite as a subprocess, and a separate client process
(``simulators.intake_load_client``) posting them over C keep-alive connections. Printed as JSON:
accepted/s, latency percentiles, the count by status, and the ceiling measured in the same run.

The ceiling is what intake cannot do without, single-threaded and in-process, without HTTP or TLS:
``check_signed_voucher`` (parse, XSD, signature, chain, revocation, registry, rules) and one
``record_intake`` commit into a separate SQLite store (WAL, synchronous=FULL, like the gateway's). Beside it,
``service_in_process_per_s`` runs the gateway's whole intake use case in-process (client certificate check,
history read, receipt built and signed, commit), so the report shows how much of the gap is the service
and how much HTTP/TLS. Both are timed alternately voucher by voucher, half of them before the HTTP run and
half after, so drift on this shared machine hits them alike.

``--rate R`` adds a paced phase on fresh vouchers at R requests/s (``--rate half``: half the accepted/s the
saturated phase measured), reporting its p99 counted from when each request was due.
"""

from __future__ import annotations

import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.bank_directory import BankDirectory
from gateway.receipts import new_receipt_id
from gateway.roles import Role
from gateway.signing import sign_document
from gateway.store import received_intake
from gateway.voucher_check import check_signed_voucher
from gateway.voucher_xml import voucher_to_xml

from .benchmarks import _voucher_of_size, machine
from .intake_load_client import write_bodies
from .pki.layout import agency_code, init_pki, load_cert, load_key
from .voucher_factory import VoucherFactory

READY = "vgw: ready on https://"


def _sign_vouchers(factory: VoucherFactory, count: int, lines: int, key, cert, now) -> list[bytes]:
    return [sign_document(voucher_to_xml(factory.voucher(agency_code(0), today=now.date(), lines=lines)),
                          key, cert, now) for _ in range(count)]


class InProcess:
    """The ceiling and the in-process service, each with its own SQLite store."""

    def __init__(self, pki: Path, work: Path, now: datetime.datetime) -> None:
        from adapters.bootstrap import PlatformConfig, build_platform
        from adapters.intake_service import IntakeService
        from adapters.store_factory import open_store

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

    def measure(self, bodies: list[bytes]) -> dict[str, float]:
        """Calls per second of each, timed alternately voucher by voucher (per-call perf_counter)."""
        spent = {"ceiling": 0.0, "service": 0.0}
        for body in bodies:
            start = time.perf_counter()
            self.ceiling(body)
            spent["ceiling"] += time.perf_counter() - start
            start = time.perf_counter()
            self.service_call(body)
            spent["service"] += time.perf_counter() - start
        return {name: len(bodies) / seconds for name, seconds in spent.items()}

    def close(self) -> None:
        self.ceiling_store.close()
        self.service_store.close()


class ServedGateway:
    """``vgw serve`` as a subprocess on a SQLite store in ``work``."""

    def __init__(self, pki: Path, work: Path, threads: int) -> None:
        self.log = work / "serve.log"
        self.store_url = f"sqlite:///{work / 'gateway.sqlite3'}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "adapters.cli", "serve", "--pki", str(pki), "--listen", "127.0.0.1:0",
             "--store", self.store_url, "--threads", str(threads),
             "--rate-limit", "0"],  # one simulated agency sends all the load: the per-agency limit would cap it
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        self.port = None
        deadline = time.monotonic() + 60
        while self.port is None:
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith(READY):
                    self.port = int(line[len(READY):].split()[0].rsplit(":", 1)[1])
            if self.port is None:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"vgw serve did not become ready:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _post(work: Path, name: str, pki: Path, port: int, bodies: list[bytes], warmup: int, concurrency: int,
          rate: float | None) -> dict:
    """Run the client process over ``bodies`` (the first ``warmup`` untimed) and return its summary."""
    write_bodies(work / f"{name}.bin", bodies)
    tls = pki / "agencies" / agency_code(0) / "tls"
    spec = {"port": port, "cafile": str(pki / "root/cert.pem"), "cert": str(tls / "cert.pem"),
            "key": str(tls / "key.pem"), "bodies": str(work / f"{name}.bin"), "warmup": warmup,
            "concurrency": concurrency, "rate": rate}
    (work / f"{name}.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-m", "simulators.intake_load_client", str(work / f"{name}.json")],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"the load client failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_intake(count: int = 2000, concurrency: int = 8, rate: str | None = None, threads: int = 8,
                 size: int = 3000) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    warmup = 2 * concurrency
    with tempfile.TemporaryDirectory(prefix="vgw-bench-intake-") as tmp:
        work = Path(tmp)
        pki = work / "pki"
        init_pki(pki, agencies=1, now=now)
        person = pki / "agencies" / agency_code(0) / "people" / "preparer"
        key, cert = load_key(person / "key.pem"), load_cert(person / "cert.pem")
        factory = VoucherFactory(BankDirectory.shipped(), seed=42)
        sample = _voucher_of_size(factory, size, now)
        started = time.perf_counter()
        bodies = _sign_vouchers(factory, warmup + count, len(sample.lines), key, cert, now)
        paced_bodies = _sign_vouchers(factory, warmup + count, len(sample.lines), key, cert, now) if rate else []
        signing_s = time.perf_counter() - started

        in_process = InProcess(pki, work, now)
        try:
            for body in bodies[:warmup]:  # chain, CRL, schema, XPath caches; SQLite files created
                in_process.measure([body])
            half = count // 2
            before = in_process.measure(bodies[warmup:warmup + half])
            gateway = ServedGateway(pki, work, threads)
            try:
                saturated = _post(work, "saturated", pki, gateway.port, bodies, warmup, concurrency, None)
                paced = None
                if rate:
                    pace = saturated["accepted_per_s"] / 2 if rate == "half" else float(rate)
                    paced = _post(work, "paced", pki, gateway.port, paced_bodies, warmup, concurrency, pace)
            finally:
                gateway.stop()
            after = in_process.measure(bodies[warmup + half:])
        finally:
            in_process.close()

    ceiling = statistics.mean([before["ceiling"], after["ceiling"]])
    result: dict = {
        "benchmark": "intake", "machine": machine(), "vouchers": count, "concurrency": concurrency,
        "gateway_threads": threads, "store": "sqlite (WAL, synchronous=FULL)",
        "voucher_bytes": len(voucher_to_xml(sample)), "signed_bytes": round(statistics.mean(map(len, bodies))),
        "lines": len(sample.lines), "signing_s": round(signing_s, 1),
        "https": saturated,
        "ceiling_per_s": round(ceiling, 1),
        "ceiling_before_after_per_s": [round(before["ceiling"], 1), round(after["ceiling"], 1)],
        "ratio": round(saturated["accepted_per_s"] / ceiling, 3),
    }
    result["service_in_process_per_s"] = round(statistics.mean([before["service"], after["service"]]), 1)
    result["service_before_after_per_s"] = [round(before["service"], 1), round(after["service"], 1)]
    if paced is not None:
        result["paced"] = paced
    return result


def _intake_cmd(args) -> int:
    from adapters.cli import CliError

    if args.count < 1 or args.concurrency < 1 or args.threads < 1:
        raise CliError("--count, --concurrency and --threads must be at least 1")
    if args.rate is not None and args.rate != "half":
        try:
            if float(args.rate) <= 0:
                raise ValueError
        except ValueError:
            raise CliError("--rate is a positive number of requests per second, or 'half'") from None
    print(json.dumps(bench_intake(count=args.count, concurrency=args.concurrency, rate=args.rate,
                                  threads=args.threads), ensure_ascii=False, indent=2))
    return 0


def register(registry) -> None:
    p = registry.command("bench", "intake", help="accepted vouchers/s over HTTPS+mTLS vs the in-process ceiling "
                         "(JSON)", handler=_intake_cmd, group_help="benchmarks, printing JSON")
    p.add_argument("--count", type=int, default=2000, help="distinct signed 3 KB vouchers to post (default 2000)")
    p.add_argument("--concurrency", type=int, default=8, help="keep-alive client connections (default 8)")
    p.add_argument("--rate", help="also a paced run at R requests/s on fresh vouchers; 'half' = half the "
                   "accepted/s just measured")
    p.add_argument("--threads", type=int, default=8, help="the gateway's worker threads (default 8)")
