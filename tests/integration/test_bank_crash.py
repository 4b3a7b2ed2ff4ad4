"""Crash safety of the bank exchange: ``vgw bank run`` is killed with SIGKILL at random moments — while
batching, publishing, or applying the bank's reports — and started again, 25 times on SQLite and 25 times
on PostgreSQL, over a real RabbitMQ, against the simulated bank running as its own process (``vgw sim
bank``, which appends every booking to a ledger file).

After every trial: every line accepted so far is paid or returned exactly once and every voucher settled;
no EndToEndId was booked twice by the bank; the lines the gateway holds as paid are exactly those the bank
booked; and ``reconcile`` (Σ vouchers = Σ lines = Σ sent = Σ paid + returned + pending, budgets) holds.
"""

from __future__ import annotations

import datetime
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pika
import pytest

from adapters.bank.transport import BankTopology
from adapters.storage.factory import open_store
from gateway.bank.payments import LineState
from gateway.reconciliation import reconcile
from simulators.bank_day import day_of_vouchers, place_accepted
from simulators.bench.transport import delete_topology

from .fresh_postgres import fresh_database

TRIALS = 25
VGW = [sys.executable, "-m", "adapters.cli"]
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    handle = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(VGW + args, stdout=subprocess.PIPE, stderr=handle, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _ready(process: subprocess.Popen, marker: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        if marker in line:
            return
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"{marker!r} not printed; log:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def amqp_url() -> str:
    url = os.environ.get("VGW_TEST_AMQP_URL")
    if not url:
        pytest.fail("VGW_TEST_AMQP_URL is not set: run under scripts/with-test-services (make test)", pytrace=False)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crash.db'}"
        return
    with fresh_database("vgw_crash") as url:
        yield url


def _settled(store, vouchers) -> bool:
    lines = store.payments_of_many([(v.voucher_id, v.revision) for v in vouchers])
    if sum(len(rows) for rows in lines.values()) != sum(len(v.lines) for v in vouchers):
        return False
    if any(row.state not in (LineState.PAID, LineState.RETURNED) for rows in lines.values() for row in rows):
        return False
    return all(store.get(v.voucher_id, v.revision).status in ("paid", "returned") for v in vouchers)


@pytest.mark.timeout(1200)  # 25 kill-and-restart trials: minutes on a slow machine, never a reason to fail
def test_killing_the_bank_exchange_at_random_moments_loses_nothing_and_pays_nothing_twice(store_url, amqp_url,
                                                                                          pki, tmp_path):
    prefix = f"crash{uuid.uuid4().hex[:6]}."
    ledger = tmp_path / "ledger.txt"
    logs = tmp_path / "logs"
    logs.mkdir()
    bank = _spawn(["sim", "bank", "--amqp", amqp_url, "--pki", str(pki.dir), "--topology-prefix", prefix,
                   "--ledger", str(ledger), "--return-rate", "0.1", "--seed", "5"], logs / "bank.log")
    store = open_store(store_url)
    rng = random.Random(20261127)
    worker_args = ["bank", "run", "--store", store_url, "--amqp", amqp_url, "--pki", str(pki.dir),
                   "--topology-prefix", prefix, "--batch-seconds", "0.2", "--relay-seconds", "0.2",
                   "--sweep-seconds", "0.5", "--max-per-message", "7"]
    vouchers = []
    kills = Counter()
    try:
        _ready(bank, "vgw sim bank: ready", logs / "bank.log")
        for trial in range(TRIALS):
            new = day_of_vouchers(rng.randint(15, 40), agencies=["379000001A", "379000002A"], today=NOW.date(),
                                  seed=1000 + trial)
            place_accepted(store, new, at=NOW)
            vouchers += new
            log = logs / f"worker-{trial}.log"
            worker = _spawn(worker_args, log)
            if rng.random() < 0.2:  # sometimes during start-up, before it even consumes
                time.sleep(rng.uniform(0.3, 1.5))
                kills["start-up"] += 1
            else:
                _ready(worker, "vgw bank: ready", log)
                time.sleep(rng.uniform(0.0, 0.8))  # batching, publishing, reports: it is all within ~1 s
                kills["running"] += 1
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            worker.stdout.close()
            restarted = _spawn(worker_args, log)
            try:
                _ready(restarted, "vgw bank: ready", log)
                deadline = time.monotonic() + 60
                while not _settled(store, vouchers):
                    assert time.monotonic() < deadline, f"trial {trial}: not settled; see {log}"
                    time.sleep(0.1)
            finally:
                restarted.send_signal(signal.SIGTERM)
                assert restarted.wait(30) == 0, log.read_text(errors="replace")[-3000:]
                restarted.stdout.close()
            bookings = Counter(line.split()[0] for line in ledger.read_text().splitlines())
            assert max(bookings.values(), default=1) == 1, f"trial {trial}: an EndToEndId was booked twice"
            paid = {row.end_to_end_id for rows in store.payments_of_many(
                [(v.voucher_id, v.revision) for v in vouchers]).values() for row in rows if row.state is LineState.PAID}
            assert paid == set(bookings), f"trial {trial}: paid lines and bank bookings differ"
            result = reconcile(store.reconciliation_facts())
            assert result.ok, f"trial {trial}: {result.discrepancy}"
        assert kills["running"] >= TRIALS // 2
    finally:
        store.close()
        bank.send_signal(signal.SIGTERM)
        bank.wait(30)
        bank.stdout.close()
        delete_topology(pika.URLParameters(amqp_url), BankTopology().prefixed(prefix))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_vgw_bank_run_logs_json_to_stderr_and_serves_its_metrics(amqp_url, pki, tmp_path):
    import json
    import urllib.request

    prefix = f"metrics{uuid.uuid4().hex[:6]}."
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    store = open_store(url)
    vouchers = day_of_vouchers(12, agencies=["379000001A"], today=NOW.date(), seed=77)
    place_accepted(store, vouchers, at=NOW)
    port = _free_port()
    bank = _spawn(["sim", "bank", "--amqp", amqp_url, "--pki", str(pki.dir), "--topology-prefix", prefix,
                   "--return-rate", "0"], tmp_path / "bank.log")
    worker = _spawn(["bank", "run", "--store", url, "--amqp", amqp_url, "--pki", str(pki.dir), "--topology-prefix",
                     prefix, "--batch-seconds", "0.2", "--relay-seconds", "0.2", "--sweep-seconds", "0.5",
                     "--metrics-listen", f"127.0.0.1:{port}"], tmp_path / "worker.log")
    try:
        _ready(bank, "vgw sim bank: ready", tmp_path / "bank.log")
        _ready(worker, "vgw bank: ready", tmp_path / "worker.log")
        deadline = time.monotonic() + 60
        while not _settled(store, vouchers):
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.1)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert f"vgw_bank_lines_batched_total {float(sum(len(v.lines) for v in vouchers))}" in metrics
        assert "vgw_bank_connected 1.0" in metrics and "vgw_bank_confirmed_total" in metrics
    finally:
        for process in (worker, bank):
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
            process.stdout.close()
        store.close()
        delete_topology(pika.URLParameters(amqp_url), BankTopology().prefixed(prefix))
    events = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines() if line.startswith("{")]
    assert any("batched" in str(e.get("log_format", "")) for e in events)
