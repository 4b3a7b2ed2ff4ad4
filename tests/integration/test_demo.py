"""`vgw demo` (what `make demo` runs) as a real process: exit 0, every outcome as expected, both parts shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

VGW = str(Path(sys.executable).parent / "vgw")
WORKFLOW = {
    "budget-load": "loaded",
    "accountant-before-reviewer": "action-out-of-order",
    "approved-1": "treasury-accepted",
    "approved-2": "treasury-accepted",
    "approved-3": "treasury-accepted",
    "accountant-sends-back": "rejected/amount-wrong",
    "corrected-revision-2": "treasury-accepted",
    "over-budget": "rejected/budget-exceeded",
}


def test_the_demo_passes_in_process_and_through_the_served_gateway(tmp_path):
    done = subprocess.run([VGW, "demo", "--agencies", "2", "--vouchers", "1", "--dir", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["ok"] and all(o["ok"] for o in report["outcomes"]), report["outcomes"]
    assert report["accepted"] >= 1 and report["refused"] >= 1
    workflow = {o["name"]: o for o in report["outcomes"] if o["part"] == "gateway"}
    assert {name: o["got"] for name, o in workflow.items()} == WORKFLOW
    assert all(o["ok"] and o["expected"] == o["got"] for o in workflow.values())
    assert report["workflow"] == len(WORKFLOW)
    assert "treasury-check" in workflow["approved-1"]["detail"]
