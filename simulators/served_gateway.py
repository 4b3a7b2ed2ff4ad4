"""A real ``vgw serve`` as a subprocess, for benchmarks that drive it over the network.

Started the way an operator would start it (``--listen 127.0.0.1:0``), ready once it prints its
``vgw: ready on https://…`` line, stopped with SIGTERM (the graceful stop). The per-agency rate limit is off:
a benchmark sends all its load as one simulated agency, and the limit would cap it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

READY = "vgw: ready on https://"


class ServedGateway:
    """``vgw serve --workers W --threads T`` on ``store_url``, logging to ``log``. ``command`` may name another
    verb taking ``vgw serve``'s options (``("sim", "serve")``: the gateway with the simulated bank in process),
    ``extra`` more options, and ``env`` more ``VGW_*`` settings."""

    def __init__(self, pki: Path, store_url: str, log: Path, *, workers: int = 1, threads: int = 8,
                 ready_timeout: float = 120.0, command: tuple[str, ...] = ("serve",), extra: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.log = log
        self.store_url = store_url
        with open(log, "wb") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "adapters.cli", *command, "--pki", str(pki), "--listen", "127.0.0.1:0",
                 "--store", store_url, "--threads", str(threads), "--workers", str(workers), "--rate-limit", "0",
                 *extra], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.port: int | None = None
        self.pids = [self.process.pid]
        deadline = time.monotonic() + ready_timeout
        while self.port is None:
            self._read_ready_line()
            if self.port is None:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"vgw serve did not become ready:\n{self.log_tail()}")
                time.sleep(0.05)  # polling the log for the ready line, with a deadline

    def _read_ready_line(self) -> None:
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith(READY):
                self.port = int(line[len(READY):].split()[0].rsplit(":", 1)[1])
                fields = dict(part.split("=", 1) for part in line.split()[4:] if "=" in part)
                if "pids" in fields:  # several workers: the supervisor does no request work itself
                    self.pids = [int(pid) for pid in fields["pids"].split(",")]
                return

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def cpu_seconds(self) -> float | None:
        """User + system CPU the serving processes have used so far (Linux /proc), or None elsewhere."""
        try:
            ticks = 0
            for pid in self.pids:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
            return ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def peak_rss_bytes(self) -> int | None:
        """The serving processes' peak resident memory so far (Linux /proc VmHWM, summed), or None elsewhere."""
        try:
            total = 0
            for pid in self.pids:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
            return total
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> int | None:
        return stop_gracefully(self.process)


def stop_gracefully(process: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """Stop a simulator's or gateway's process as an operator would (SIGTERM: it finishes what is in flight),
    killing it after ``timeout`` seconds; its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
