"""`vgw sim agency` against `vgw sim serve`, both real processes: agencies over their rate limit wait as told
(429 Retry-After) and still take every voucher to paid; and `vgw serve --bank-exchange` refuses a missing or
TLS bank link at start, and keeps serving (trying again) while the bank's broker does not answer."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from simulators.served_gateway import ServedGateway

VGW = str(Path(sys.executable).parent / "vgw")


def _vgw(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([VGW, *args], capture_output=True, text=True, timeout=timeout)


def _pki(tmp_path: Path) -> Path:
    assert _vgw("pki", "init", str(tmp_path / "pki"), "--agencies", "2").returncode == 0
    return tmp_path / "pki"


def test_agencies_over_their_rate_limit_wait_as_told_and_finish_the_day(tmp_path):
    pki = _pki(tmp_path)
    store = f"sqlite:///{tmp_path / 'g.sqlite3'}"
    allotments = tmp_path / "allotments.csv"
    written = _vgw("sim", "agency", "--gateway", "https://127.0.0.1:1", "--pki", str(pki),
                   "--write-allotments", str(allotments))  # needs no gateway, no --vouchers
    assert written.returncode == 0, written.stderr
    assert _vgw("budget", "load", "--store", store, "--operator", "test", str(allotments)).returncode == 0
    gateway = ServedGateway(pki, store, tmp_path / "gateway.log", command=("sim", "serve"),
                            extra=("--rate-limit", "4", "--rate-burst", "1"),
                            env={"VGW_BANK_BATCH_SECONDS": "0.5", "VGW_BANK_RELAY_SECONDS": "0.5"})
    try:
        done = _vgw("sim", "agency", "--gateway", f"https://127.0.0.1:{gateway.port}", "--pki", str(pki),
                    "--vouchers", "10", "--concurrency", "4", "--poll-seconds", "0.3", "--settle-timeout", "120",
                    "--json", "--stories", "--seed", "3")
    finally:
        gateway.stop()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["ok"] and report["vouchers"] == report["finished"] == 10
    assert report["statements"] == 2 and report["statement_mismatches"] == []
    assert set(report["outcomes"]) <= {"paid", "returned"} and report["unexpected"] == []
    assert sum(call["throttled"] for call in report["api"].values()) > 0  # the limit was met, and waited out
    assert all(call["errors"] == 0 for call in report["api"].values())
    assert len(report["stories"]) == 10 and all(s["outcome"] in ("paid", "returned") for s in report["stories"])


def test_serve_refuses_a_bank_exchange_without_a_usable_bank_link(tmp_path):
    pki = _pki(tmp_path)
    common = ("serve", "--pki", str(pki), "--listen", "127.0.0.1:0", "--store", f"sqlite:///{tmp_path / 'g.db'}",
              "--bank-exchange")
    missing = _vgw(*common, timeout=60)
    assert missing.returncode == 2 and "bank.amqp" in missing.stderr and "Traceback" not in missing.stderr
    tls = _vgw(*common, "--bank-amqp", "amqps://guest:guest@127.0.0.1:5671/", timeout=60)
    assert tls.returncode == 2 and "amqps" in tls.stderr and "Traceback" not in tls.stderr


def test_serve_keeps_serving_and_retries_while_the_banks_broker_is_down(tmp_path):
    pki = _pki(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens here once the socket is closed
    gateway = ServedGateway(pki, f"sqlite:///{tmp_path / 'g.db'}", tmp_path / "gateway.log",
                            extra=("--bank-exchange", "--bank-amqp", f"amqp://guest:guest@127.0.0.1:{closed}/"))
    try:
        deadline = time.monotonic() + 30
        while '"pause": 2,' not in gateway.log_tail(100_000):  # the second attempt failed too: still trying
            assert gateway.process.poll() is None and time.monotonic() < deadline, gateway.log_tail()
            time.sleep(0.1)  # polling the log, with a deadline
        assert socket.create_connection(("127.0.0.1", gateway.port), timeout=5)  # still taking connections
    finally:
        assert gateway.stop() == 0
