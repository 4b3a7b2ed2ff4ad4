"""What the benchmarks share: the machine they ran on, the voucher of a given size they measure with, and the
interleaved rounds that make two rates of one run comparable."""

from __future__ import annotations

import datetime
import os
import platform as host_platform
import statistics
import time
from importlib.metadata import version
from pathlib import Path

from gateway.vouchers.xml_mapping import voucher_to_xml
from simulators.pki.layout import agency_code
from simulators.voucher_factory import VoucherFactory


def machine() -> dict:
    """The CPU, cores and library versions a benchmark's figures belong to (printed in every JSON)."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": host_platform.python_version(),
            "lxml": version("lxml"), "signxml": version("signxml"), "cryptography": version("cryptography")}


def voucher_of_size(factory: VoucherFactory, size: int, now: datetime.datetime):
    """The first voucher (fewest lines) whose unsigned XML reaches ``size`` bytes: the issue's "3 KB voucher"."""
    for lines in range(1, 50):
        voucher = factory.voucher(agency_code(0), today=now.date(), lines=lines)
        if len(voucher_to_xml(voucher)) >= size:
            return voucher
    raise AssertionError("no voucher of that size")


def interleaved(fns: dict, data: bytes, rounds: int, seconds: float) -> dict[str, float]:
    """Calls per second of each function, median over ``rounds``.

    Within a round the functions run alternately, call by call, each timed on its own; so a slow patch
    of this noisy machine slows all of them alike and their ratio holds even when the absolute rates wander.
    """
    for fn in fns.values():  # warm caches (chain, revocation, compiled schema and XPaths) outside the timing
        fn(data)
    rates: dict[str, list[float]] = {name: [] for name in fns}
    items = list(fns.items())
    for _ in range(rounds):
        spent = dict.fromkeys(fns, 0.0)
        calls = 0
        deadline = time.perf_counter() + seconds * len(items)
        while calls == 0 or time.perf_counter() < deadline:
            for name, fn in items:
                start = time.perf_counter()
                fn(data)
                spent[name] += time.perf_counter() - start
            calls += 1
        for name in fns:
            rates[name].append(calls / spent[name])
    return {name: statistics.median(values) for name, values in rates.items()}
