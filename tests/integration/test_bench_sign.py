"""`vgw bench sign` runs against a SoftHSM2 store of its own and prints both rates of each key kind."""

from __future__ import annotations

import json
import os
import subprocess

from .test_https_intake import VGW


def test_the_sign_benchmark_times_the_token_beside_memory_keys():
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}  # it makes a token store of its own
    done = subprocess.run([VGW, "bench", "sign", "--rounds", "1", "--seconds", "0.05"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["benchmark"] == "sign" and result["token"].startswith("SoftHSM2 ")
    for kind in ("rsa", "ec"):
        for measure in ("signature_per_s", "xades_voucher_per_s"):
            rates = result[kind][measure]
            assert rates["token"] > 0 and rates["memory"] > 0
            assert abs(rates["ratio"] - rates["token"] / rates["memory"]) < 0.01  # from the unrounded rates
