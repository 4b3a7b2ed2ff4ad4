"""`vgw bench approvals` with tiny numbers: a real gateway, a real client process, every action accepted,
and a report that says so; a run with refused answers or incomplete vouchers must say so and fail."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import pytest

from simulators.bench import approvals as bench_approvals
from simulators.bench.approvals import STAGES, Run, Signed, report

from .test_https_intake import VGW

VOUCHERS = 5


def test_a_tiny_run_takes_every_voucher_through_the_four_stages_and_reports_rates_and_latency():
    done = subprocess.run([VGW, "bench", "approvals", "--vouchers", str(VOUCHERS), "--connections", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["errors"] == 0 and "error_detail" not in result
    assert result["actions"] == 4 * VOUCHERS == result["by_status"]["202"]
    assert result["by_status"] == {"202": 4 * VOUCHERS}
    assert result["vouchers"] == VOUCHERS and result["voucher_intake"]["by_status"] == {"202": VOUCHERS}
    # the run allots the vouchers' budgets, so releases pass the treasury checks (a possible duplicate is held)
    assert sum(result["final_status"].values()) == VOUCHERS + result["warmup_vouchers"]
    assert set(result["final_status"]) <= {"treasury-accepted", "held"}
    assert result["stages"] == ["reviewer", "accountant", "head", "releaser"] == list(result["by_stage"])
    assert result["store"].startswith("sqlite") and result["workers"] == 1 and result["connections"] == 2
    for key in ("actions_per_s", "ceiling_actions_per_s", "service_in_process_actions_per_s", "ratio"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["ratio"] == pytest.approx(result["actions_per_s"] / result["ceiling_actions_per_s"], rel=0.01)
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert all(stage["accepted_per_s"] > 0 and stage["p50_ms"] <= stage["p99_ms"]
               for stage in result["by_stage"].values())


def _phase(by_status: dict, unexpected: list | None = None) -> dict:
    requests = sum(by_status.values())
    return {"requests": requests, "warmup": 1, "wall_s": 1.0, "by_status": by_status,
            "warmup_by_status": {"202": 1}, "accepted_per_s": float(by_status.get("202", 0)),
            "latency": {"p50_ms": 10.0, "p95_ms": 20.0, "p99_ms": 30.0, "max_ms": 40.0},
            "unexpected": unexpected or []}


def _run(stage_status: dict[str, dict], incomplete: list[dict]) -> Run:
    phases = {stage.value: _phase(stage_status.get(stage.value, {"202": 2})) for stage in STAGES}
    requests = sum(p["requests"] for p in phases.values())
    return Run(workers=1, threads=8, connections=1, vouchers=2, warmup=1, store="sqlite",
               signed=Signed([b"v" * 10] * 3, ["A", "B", "C"], {stage: [b"a" * 5] * 3 for stage in STAGES}),
               signing_s=1.0, intake={"phases": {"vouchers": _phase({"202": 2})}},
               https={"phases": phases, "client_cpu_ms_per_request": 1.0,
                      "total": {"requests": requests, "accepted_per_s": 8.0, "wall_s": 4.0,
                                "latency": {"p50_ms": 10.0, "p95_ms": 20.0, "p99_ms": 30.0, "max_ms": 40.0}}},
               in_process=[({"ceiling": 1.0, "service": 2.0}, 4), ({"ceiling": 1.0, "service": 2.0}, 4)],
               gateway_cpu_s=1.0, incomplete=incomplete, final_status={"released": 3}, gateway_exit=0,
               gateway_log_tail="")


def test_refused_answers_and_vouchers_without_their_four_actions_count_as_errors():
    refusal = {"index": 2, "path": "/v1/vouchers/B/actions", "status": 409, "answer": "action-out-of-order"}
    run = _run({"head": {"202": 1, "409": 1}}, incomplete=[{"voucher_id": "B", "status": "accountant-approved",
                                                            "stages": ["reviewer", "accountant"]}])
    run.https["phases"]["head"]["unexpected"] = [refusal]
    result = report(run)
    assert result["errors"] == 2
    assert result["by_status"] == {"202": 7, "409": 1}
    assert result["error_detail"]["unexpected_answers"] == {"head": [refusal]}
    assert result["error_detail"]["incomplete_count"] == 1
    assert report(_run({}, incomplete=[]))["errors"] == 0


def test_the_command_exits_non_zero_when_the_run_had_errors(monkeypatch, capsys):
    monkeypatch.setattr(bench_approvals, "bench_approvals", lambda **_: {"errors": 3})
    args = SimpleNamespace(vouchers=1, connections=1, workers=1, threads=1, store=None, warmup=None)
    assert bench_approvals._approvals_cmd(args) == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == {"errors": 3} and "3 errors" in err
    monkeypatch.setattr(bench_approvals, "bench_approvals", lambda **_: {"errors": 0})
    assert bench_approvals._approvals_cmd(args) == 0
