"""`vgw bench intake` end to end on a small count: a real `vgw serve --workers 2`, a real client process, and a
ceiling measured in as many processes, so the benchmark `make bench` runs cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess

from .test_https_intake import VGW


def test_the_intake_benchmark_compares_like_with_like():
    done = subprocess.run([VGW, "bench", "intake", "--count", "12", "--concurrency", "2", "--workers", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    https = result["https"]
    assert https["by_status"] == {"202": 12} and https["accepted_per_s"] > 0
    assert result["gateway_workers"] == 2 and len(result["ceiling_per_process_per_s"]) == 2
    assert result["ceiling_per_s"] > 0 and result["service_in_process_per_s"] > 0
    assert abs(result["ratio"] - https["accepted_per_s"] / result["ceiling_per_s"]) < 0.01
    assert set(result["receipt_signing_cpu_ms"]) == {"ecdsa_p256", "rsa_2048"}
