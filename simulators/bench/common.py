"""What the benchmarks share: the machine they ran on, and the voucher of a given size they measure with."""

from __future__ import annotations

import datetime
import os
import platform as host_platform
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
