"""A RabbitMQ node of the test's own, on loopback, that the test may stop and start again.

The shared broker of ``scripts/with-test-services`` must stay up for every other test, so a test that
restarts its broker needs one nobody else uses. This follows /work/shared/RECIPES.md section 1: a private
epmd (so the node never registers with a system epmd on 4369), a temporary mnesia dir (kept across
:meth:`stop` and :meth:`start`, so durable queues and persistent messages survive like in production), and
ports below 32768 outside the ranges ``with-test-services`` draws from (20000-26499).

Readiness is "the AMQP port answers the protocol header": the listener opens only once the broker has
booted (``rabbitmq-diagnostics ping`` answers seconds earlier, before there is anything to connect to).
Every wait polls with a deadline.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from pathlib import Path

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
EPMD = Path("/usr/bin/epmd")
NODE = "vgwprivate@localhost"

# with-test-services draws PostgreSQL from 20000+, AMQP (+1, +10..+20) from 22000+ and epmd from 24500+,
# each over 2000 ports; ours stay above all of that and below the kernel's outgoing range (32768+).
AMQP_PORTS = range(27000, 29000, 30)  # a node uses P, P+1 (distribution) and P+10..P+20 (CLI)
EPMD_PORTS = range(29500, 30000)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick(candidates, *offsets: int) -> int:
    for port in random.sample(list(candidates), len(candidates)):
        if all(_free(port + offset) for offset in offsets):
            return port
    raise RuntimeError(f"no free port in {candidates}")


def _spawn(args: list[str], log: Path, **kw) -> subprocess.Popen:
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)


def _wait(condition, timeout: float, what: str, process: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited ({process.returncode}):\n"
                               f"{log.read_text(errors='replace')[-4000:] if log else ''}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


class PrivateRabbitMQ:
    """``start()``, ``stop()`` (SIGTERM, wait), ``start()`` again on the same data; ``close()`` removes it all."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = _pick(AMQP_PORTS, 0, 1, *range(10, 21))
        self.epmd_port = _pick(EPMD_PORTS, 0)
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self._epmd: subprocess.Popen | None = None
        self._server: subprocess.Popen | None = None
        for sub in ("mnesia", "log", "etc", "home"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        (directory / "etc/rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        (directory / "etc/enabled_plugins").write_text("[].\n")
        (directory / "etc/rabbitmq-env.conf").write_text("")  # so /etc/rabbitmq's env file is not read
        only_loopback = "-kernel inet_dist_use_interface {127,0,0,1}"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "HOME": str(directory / "home"), "RABBITMQ_CONF_ENV_FILE": str(directory / "etc/rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": NODE, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.port + 1),
            "ERL_EPMD_ADDRESS": "127.0.0.1", "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"), "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(directory / "etc/rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "etc/enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": only_loopback, "RABBITMQ_CTL_ERL_ARGS": only_loopback,
            "RABBITMQ_CTL_DIST_PORT_MIN": str(self.port + 10), "RABBITMQ_CTL_DIST_PORT_MAX": str(self.port + 20),
        }

    def start(self, timeout: float = 60.0) -> None:
        """Start the node and return once it takes AMQP connections."""
        self.launch()
        self.wait_until_ready(timeout)

    def launch(self) -> None:
        """Start the node (and, the first time, its epmd) without waiting for its boot (~7-10 s), so a
        test can prepare meanwhile; :meth:`wait_until_ready` then waits."""
        if self._epmd is None:
            self._epmd = _spawn([str(EPMD), "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                                self.dir / "epmd.log")
            _wait(lambda: not _free(self.epmd_port), 10, "epmd", self._epmd)
        self._server = _spawn([str(SERVER)], self.dir / "server.log", env=self.env)

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        _wait(self.answers_amqp, timeout, "RabbitMQ boot", self._server, self.dir / "server.log")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: the broker closes its client connections and shuts down cleanly; wait for it to exit."""
        if self._server is not None:
            self._server.terminate()
            self._server.wait(timeout)
            self._server = None

    def close(self) -> None:
        self.stop()
        if self._epmd is not None:
            self._epmd.terminate()
            self._epmd.wait(10)
            self._epmd = None

    def answers_amqp(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                return s.recv(1) == b"\x01"  # Connection.Start is a method frame (type 1)
        except OSError:
            return False
