"""`vgw serve --workers 2` as real processes on real mTLS sockets: both workers serve one listener, metrics
are totals over both, AMQP is consumed by both without a message answered twice, and the supervisor stops
every worker (on SIGTERM, when a worker dies, and when it is itself killed) without leaving one behind."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pika
import pytest

from adapters.storage.factory import open_store
from gateway.intake.receipts import verify_receipt
from simulators.pki.layout import init_pki, load_cert

from ..conftest import AGENCY_A, NOW
from .test_amqp_intake import Agency
from .test_amqp_intake import signed_voucher as amqp_signed_voucher
from .test_https_intake import VGW, Gateway, call, client_context, https_port, signed_voucher, wait_until_ready

WORKERS = 2


class Supervised(Gateway):
    """`vgw serve --workers 2` with a plain metrics port; ``pids`` are the workers' from the ready line."""

    def __init__(self, pki_dir: Path, base: Path, *extra: str, env: dict | None = None) -> None:
        super().__init__(pki_dir, f"sqlite:///{base / 'store.sqlite3'}", base / "serve.log")
        self.extra, self.env = extra, env
        self.metrics: str | None = None
        self.pids: list[int] = []

    def start(self) -> None:
        self.process = subprocess.Popen(
            [VGW, "serve", "--pki", str(self.pki_dir), "--listen", "127.0.0.1:0", "--store", self.store_url,
             "--workers", str(WORKERS), "--threads", "2", "--metrics-listen", "127.0.0.1:0", *self.extra],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
            env={**(self.env or os.environ), "TMPDIR": str(self.log.parent)})  # where the metrics directory goes
        ready = wait_until_ready(self.process, self.log, timeout=90)
        fields = dict(part.split("=", 1) for part in ready.split()[4:])
        self.port, self.metrics = https_port(ready), fields["metrics"]
        self.pids = [int(pid) for pid in fields["pids"].split(",")]
        assert int(fields["workers"]) == WORKERS and len(set(self.pids)) == WORKERS

    def kill_everything(self) -> None:
        """Test teardown: a graceful stop, and then whatever still runs goes, so no test leaves a process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        for pid in self.pids:
            try:
                if b"adapters.serve.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():  # not a reused pid
                    os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass


def gone(pid: int) -> bool:
    """True once ``pid`` has exited and been reaped (a zombie still has /proc/PID, in state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_until_gone(pids: list[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running after {timeout} s: {[p for p in pids if not gone(p)]}"
        time.sleep(0.05)  # polling for the processes' exit, with a deadline


def post(gateway: Gateway, data: bytes) -> tuple[int, str | None, bytes]:
    """POST one voucher on a connection of its own: (status, X-VGW-Worker, body)."""
    conn = http.client.HTTPSConnection("127.0.0.1", gateway.port, context=client_context(gateway.pki_dir, AGENCY_A),
                                       timeout=30)
    try:
        conn.request("POST", "/v1/vouchers", body=data, headers={"Content-Type": "application/xml"})
        reply = conn.getresponse()
        return reply.status, reply.getheader("X-VGW-Worker"), reply.read()
    finally:
        conn.close()


def sample(exposition: str, series: str) -> float:
    """The value of one series (``name{labels}`` exactly as exposed, labels sorted) in a text exposition."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", exposition, re.MULTILINE)
    assert match, f"{series} not in:\n{exposition}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("workers-pki")
    init_pki(directory, agencies=1, now=NOW)
    return directory


@pytest.fixture
def supervised(pki_dir, tmp_path):
    gateway = Supervised(pki_dir, tmp_path)
    gateway.start()
    yield gateway
    gateway.kill_everything()


def test_both_workers_take_vouchers_on_one_listener_and_metrics_are_totals(supervised, factory):
    gateway_cert = load_cert(supervised.pki_dir / "gateway/cert.pem")
    served = Counter()
    # Each POST opens its own connection, and the kernel hands it to whichever worker accepts first; 60
    # connections bound the wait for the second worker (measured: they alternate almost evenly).
    for attempt in range(60):
        voucher, data = signed_voucher(supervised, factory)
        status, worker, receipt = post(supervised, data)
        assert status == 202, receipt
        assert verify_receipt(receipt, gateway_cert=gateway_cert, now=NOW).voucher_id == voucher.voucher_id
        served[worker] += 1
        if len(served) == WORKERS and attempt >= 9:
            break
    assert set(served) == {str(i) for i in range(1, WORKERS + 1)}, served
    accepted = sum(served.values())

    with urllib.request.urlopen(supervised.metrics, timeout=10) as reply:
        plain = reply.read().decode()
    assert sample(plain, "vgw_vouchers_accepted_total") == accepted
    assert sample(plain, 'vgw_http_requests_total{method="POST",route="/v1/vouchers",status="202"}') == accepted
    assert sample(plain, 'vgw_http_request_duration_seconds_count{method="POST",route="/v1/vouchers"}') == accepted
    assert sample(plain, "vgw_http_requests_in_flight") == 0
    # The mTLS route, answered by either worker, reports the same totals.
    for _ in range(2 * WORKERS):
        status, _, body = call(supervised, "GET", "/metrics")
        assert status == 200 and sample(body.decode(), "vgw_vouchers_accepted_total") == accepted


def test_sigterm_stops_every_worker_gracefully_and_the_store_is_whole(supervised, factory):
    accepted = 0
    for _ in range(4):
        _, data = signed_voucher(supervised, factory)
        assert post(supervised, data)[0] == 202
        accepted += 1
    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.process.wait(timeout=60) == 0, supervised.log.read_text(errors="replace")[-3000:]
    wait_until_gone(supervised.pids)
    assert not list(supervised.log.parent.glob("vgw-metrics-*"))
    store = open_store(supervised.store_url)
    try:
        assert len(store.list_for_agency(AGENCY_A)[0]) == accepted
    finally:
        store.close()
    audit = subprocess.run([VGW, "audit", "verify", "--store", supervised.store_url], capture_output=True,
                           text=True, timeout=60)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_dead_worker_stops_the_others_and_the_supervisor_exits_70(supervised):
    victim, survivor = supervised.pids
    os.kill(victim, signal.SIGKILL)
    assert supervised.process.wait(timeout=60) == 70
    wait_until_gone([survivor])
    assert "exited unexpectedly with signal SIGKILL" in supervised.log.read_text(errors="replace")


def test_workers_stop_by_themselves_when_the_supervisor_is_killed(supervised):
    assert len(list(supervised.log.parent.glob("vgw-metrics-*"))) == 1
    supervised.process.kill()
    supervised.process.wait(timeout=30)
    wait_until_gone(supervised.pids)
    assert not list(supervised.log.parent.glob("vgw-metrics-*")), "the workers left the metrics files behind"


def test_each_worker_consumes_amqp_and_every_message_is_answered_once(pki_dir, tmp_path, factory):
    url = os.environ.get("VGW_TEST_AMQP_URL")
    if not url:
        pytest.fail("VGW_TEST_AMQP_URL is not set: run under scripts/with-test-services (make test)", pytrace=False)
    gateway = Supervised(pki_dir, tmp_path, "--amqp", url, env={**os.environ, "VGW_AMQP_USERS": f"guest={AGENCY_A}"})
    gateway.start()
    try:
        from adapters.amqp.intake import AmqpTopology

        topology = AmqpTopology()
        parameters = pika.URLParameters(url)
        watcher = pika.BlockingConnection(parameters)
        try:
            deadline = time.monotonic() + 30
            while watcher.channel().queue_declare(topology.queue, passive=True).method.consumer_count < WORKERS:
                assert time.monotonic() < deadline, "not every worker consumes the intake queue"
                watcher.sleep(0.1)  # polling the broker for the consumers, with a deadline
        finally:
            watcher.close()

        agency = Agency(parameters, topology)
        try:
            sent = {}
            for _ in range(12):
                voucher, data = amqp_signed_voucher(gateway.pki_dir, factory)
                sent[agency.send(data)] = voucher.voucher_id
            replies = agency.replies(len(sent), timeout=60)
        finally:
            agency.close()
        answered = Counter(properties.correlation_id for properties, _ in replies)
        assert answered == Counter(sent.keys()) and all(p.headers["status"] == 202 for p, _ in replies)
    finally:
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(timeout=60) == 0
        gateway.kill_everything()
    store = open_store(gateway.store_url)
    try:
        assert {r.voucher_id for r in store.list_for_agency(AGENCY_A)[0]} == set(sent.values())
    finally:
        store.close()


def test_a_worker_count_out_of_range_is_refused(pki_dir):
    done = subprocess.run([VGW, "serve", "--pki", str(pki_dir), "--workers", "0"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "workers: expected 1 to 64, got 0" in done.stderr


def test_a_worker_that_cannot_start_stops_the_start_up_with_its_exit_code(pki_dir, tmp_path):
    log = tmp_path / "serve.log"
    mark = f"VGW_TEST_MARK={uuid.uuid4().hex}"  # inherited by the workers: finds any that outlived the supervisor
    process = subprocess.Popen(
        [VGW, "serve", "--pki", str(pki_dir), "--listen", "127.0.0.1:0", "--workers", str(WORKERS),
         "--store", f"sqlite:///{tmp_path / 'store.sqlite3'}"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "VGW_TLS_CERT": str(tmp_path / "missing.pem"), "VGW_TEST_MARK": mark.split("=")[1]})
    try:
        assert process.wait(timeout=90) == 2
    finally:
        process.kill()
    text = log.read_text(errors="replace")
    assert "cannot start" in text and "missing.pem" in text and "vgw: ready" not in text
    assert not processes_marked(mark.encode()), "a worker outlived the supervisor"


def processes_marked(mark: bytes) -> list[int]:
    """Live processes (not zombies) whose environment holds ``mark``."""
    marked = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if mark in environ.read_bytes().split(b"\0") and not gone(int(environ.parent.name)):
                marked.append(int(environ.parent.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return marked
