"""`vgw sim year` at a small scale, as a real process: the year's mix through the gateway and the bank, and
the figures it must report (wall time, CPU, throughput per stage, peak RSS, the projection) with the checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

VGW = str(Path(sys.executable).parent / "vgw")


def test_a_slice_of_the_year_reports_its_figures_and_holds_its_checks(tmp_path):
    done = subprocess.run([VGW, "sim", "year", "--scale", "0.0002", "--agencies", "3", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    year = json.loads(done.stdout)
    assert year["ok"] and year["vouchers"] == 30 and year["agencies"] == 3 and year["reconciled"]
    assert set(year["outcomes"]) <= {"paid", "returned"} and year["open_vouchers"] == {}
    assert year["bank"]["booked_twice"] == 0 and year["bank"]["booked"] == year["payments_by_outcome"]["paid"]
    assert year["payments"] >= 30 and abs(year["projected_year_s"] - year["wall_s"] / 0.0002) <= 0.05 / 0.0002 + 1
    assert year["cpu_s"]["gateway"] > 0 and year["cpu_s"]["agencies"] > 0
    assert year["peak_rss_mib"]["gateway"] > 10 and year["peak_rss_mib"]["agencies"] > 10
    rates = year["throughput_per_s"]
    assert rates["submits"] > 0 and rates["approvals"] > 0 and rates["payments_paid"] > 0
    assert year["api"]["approve"]["count"] >= 30 * 4


def test_workers_need_the_broker_mode(tmp_path):
    done = subprocess.run([VGW, "sim", "year", "--workers", "2", "--dir", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "--workers needs --amqp" in done.stderr
