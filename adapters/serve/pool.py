"""``vgw serve --workers N``: N gateway processes accepting on one listening address, and their supervisor.

Why processes: checking a voucher is CPU work in Python (lxml, signxml, cryptography) under one GIL per
process, so one process uses about one core however many threads it has. Each worker is a whole gateway
(:func:`adapters.serve.command.run_gateway`): its own thread pool, store connections, registry watcher,
rate limiter and, when configured, AMQP consumer. The stores already serialise the audit chain across
processes (SQLite ``BEGIN IMMEDIATE``, PostgreSQL the ``audit_head`` row lock).

This process (the supervisor) runs no reactor and touches no voucher. It

- binds the HTTPS listener (and the plain metrics listener) ONCE, so port 0 means one port for all, and
  hands the listening sockets to every worker, which adopts them (``reactor.adoptStreamPort``, TLS wrapped
  as ``listenSSL`` does). The kernel queues connections on the one socket and whichever worker's reactor
  is free accepts next, so a busy worker leaves new connections to an idle one;
- makes the directory where the workers' Prometheus values live (``PROMETHEUS_MULTIPROC_DIR``), so every
  worker's ``/metrics`` answers the totals of all of them (:mod:`adapters.serve.multiprocess_metrics`), and removes it
  at the end;
- prints the one ``vgw: ready on ...`` line only when every worker has said it accepts connections;
- forwards SIGTERM and SIGINT to the workers as SIGTERM (each stops gracefully: it stops accepting,
  finishes the requests in flight, closes its store) and exits 0 once all have exited 0;
- when a worker dies unexpectedly, stops the others the same graceful way and exits 70. It does not
  restart workers: a crash is a bug or a resource problem (memory, the store) that a quiet restart loop
  would hide; the service manager (systemd ``Restart=on-failure``) restarts the whole unit with its own
  rate limits, and the listening socket is rebound at once (SO_REUSEADDR).

Workers never outlive the supervisor: each holds one end of a socketpair whose other end only the
supervisor holds, and stops gracefully when it reads EOF there (the supervisor was killed, even by SIGKILL).
Workers run in their own process group, so a terminal's Ctrl-C reaches only the supervisor, which forwards
it once. The same socketpair carries the worker's settings in (not in argv or the environment, which other
local users may read) and the worker's "ready" out.
"""

from __future__ import annotations

import os
import pickle
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from adapters.command_line import CliError
from adapters.http.settings import listen_address
from adapters.serve.ready import ready_line

EXIT_WORKER_DIED = 70
START_TIMEOUT = 120.0
"""Seconds for every worker to load its trust files, open its store and accept; a worker that takes longer
is taken for broken."""
STOP_TIMEOUT = 60.0
"""Seconds the workers get to finish in-flight requests after SIGTERM before they are killed."""
READY = b"ready\n"
BACKLOG = 128


@dataclass(frozen=True)
class WorkerSpec:
    """What the supervisor hands one worker over its control socket."""

    index: int
    """1..N, shown in the ``X-VGW-Worker`` response header and the supervisor's messages."""
    settings: dict
    """The supervisor's loaded settings, so every worker runs with exactly the same ones."""
    https_fd: int
    https_family: int
    metrics_fd: int | None
    metrics_family: int | None
    metrics_dir: str


def send_spec(control: socket.socket, spec: WorkerSpec) -> None:
    data = pickle.dumps(spec)
    control.sendall(struct.pack(">I", len(data)) + data)


def receive_spec(control: socket.socket) -> WorkerSpec:
    """Blocking: the supervisor sends it right after starting the worker. Trusted: only our parent holds the
    other end of this socketpair."""

    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = control.recv(size - len(data))
            if not chunk:
                raise EOFError("the supervisor closed the control socket before sending the settings")
            data += chunk
        return data

    (length,) = struct.unpack(">I", exactly(4))
    return pickle.loads(exactly(length))


def bind_listener(text: str) -> socket.socket:
    """A non-blocking listening TCP socket on ``HOST:PORT`` that workers can inherit."""
    host, port = listen_address(text)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    sock.setblocking(False)  # twisted requires it of an adopted port; the flag is shared with every worker
    return sock


class _Worker:
    def __init__(self, index: int, process: subprocess.Popen, control: socket.socket) -> None:
        self.index = index
        self.process = process
        self.control = control
        self.ready = False
        self.buffer = b""
        self.returncode: int | None = None


class WorkerPool:
    """Run ``settings["workers"]`` workers until a signal or a worker's death; :meth:`run` returns the exit code."""

    def __init__(self, settings: dict, *, start_timeout: float = START_TIMEOUT,
                 stop_timeout: float = STOP_TIMEOUT) -> None:
        self.settings = settings
        self.count = settings["workers"]
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.workers: list[_Worker] = []
        self.selector = selectors.DefaultSelector()
        self.stop_signal: int | None = None

    def run(self) -> int:

        try:
            https = bind_listener(self.settings["listen"])
            metrics = bind_listener(self.settings["metrics.listen"]) if self.settings["metrics.listen"] else None
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot start: cannot listen: {exc}") from None
        metrics_dir = tempfile.mkdtemp(prefix="vgw-metrics-")
        wakeup_r, wakeup_w = socket.socketpair()
        wakeup_r.setblocking(False)
        wakeup_w.setblocking(False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake select()
        old_wakeup = signal.set_wakeup_fd(wakeup_w.fileno(), warn_on_full_buffer=False)
        self.selector.register(wakeup_r, selectors.EVENT_READ, None)
        try:
            try:
                for index in range(1, self.count + 1):
                    self._spawn(index, https, metrics, metrics_dir)
                code = self._until_ready(https, metrics)
                if code is None:
                    code = self._supervise()
            except Exception:  # our bug or the OS refusing a process: never leave the started workers behind
                self._stop_all(EXIT_WORKER_DIED)
                raise
            return self._stop_all(code)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.selector.close()
            for sock in (https, metrics, wakeup_r, wakeup_w):
                if sock is not None:
                    sock.close()
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def _spawn(self, index: int, https: socket.socket, metrics: socket.socket | None, metrics_dir: str) -> None:
        ours, theirs = socket.socketpair()
        fds = [theirs.fileno(), https.fileno()] + ([metrics.fileno()] if metrics is not None else [])
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        process = subprocess.Popen([sys.executable, "-m", "adapters.serve.worker", str(theirs.fileno())],
                                   pass_fds=fds, env=env, process_group=0)
        theirs.close()
        send_spec(ours, WorkerSpec(index=index, settings=self.settings, https_fd=https.fileno(),
                                   https_family=https.family, metrics_fd=metrics.fileno() if metrics else None,
                                   metrics_family=metrics.family if metrics else None, metrics_dir=metrics_dir))
        ours.setblocking(False)
        worker = _Worker(index, process, ours)
        self.workers.append(worker)
        self.selector.register(ours, selectors.EVENT_READ, worker)

    def _wait(self, timeout: float) -> None:
        """Wait for a worker's message or EOF, a signal or a child's exit (all wake the selector), or ``timeout``."""
        for key, _ in self.selector.select(timeout):
            if key.data is None:
                try:
                    while key.fileobj.recv(4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            worker = key.data
            try:
                data = worker.control.recv(4096)
            except (BlockingIOError, ConnectionError):
                data = b""
            if not data:
                self.selector.unregister(worker.control)
            worker.buffer += data
            if READY in worker.buffer:
                worker.ready = True

    def _reap(self) -> list[_Worker]:
        """Workers that have exited since the last call."""
        gone = []
        for worker in self.workers:
            if worker.returncode is None and worker.process.poll() is not None:
                worker.returncode = worker.process.returncode
                gone.append(worker)
        return gone

    def _until_ready(self, https: socket.socket, metrics: socket.socket | None) -> int | None:
        """None once every worker accepts (the ready line printed), or the exit code to stop with."""
        deadline = time.monotonic() + self.start_timeout
        while not all(w.ready for w in self.workers):
            if self.stop_signal is not None:
                return 0
            for worker in self._reap():
                _say(f"worker {worker.index} (pid {worker.process.pid}) exited with {_status(worker.returncode)} "
                     "before accepting connections; stopping")
                return worker.returncode if worker.returncode and worker.returncode > 0 else EXIT_WORKER_DIED
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _say(f"not every worker accepted connections within {self.start_timeout:g} s; stopping")
                return EXIT_WORKER_DIED
            self._wait(min(remaining, 1.0))
        line = ready_line(self.settings, https.getsockname()[1], metrics.getsockname()[1] if metrics else None)
        pids = ",".join(str(w.process.pid) for w in self.workers)
        print(f"{line} workers={self.count} pids={pids}", flush=True)
        return None

    def _supervise(self) -> int:
        """Block until a stop signal (exit 0 if the workers then stop cleanly) or a worker's death (70)."""
        while self.stop_signal is None:
            for worker in self._reap():
                _say(f"worker {worker.index} (pid {worker.process.pid}) exited unexpectedly with "
                     f"{_status(worker.returncode)}; stopping the other workers")
                return EXIT_WORKER_DIED
            self._wait(1.0)  # the selector wakes at once on a signal or a child's exit; 1 s is only a backstop
        return 0

    def _stop_all(self, code: int) -> int:
        """SIGTERM every live worker, wait for all of them (SIGKILL after ``stop_timeout``), return the code."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while True:
            self._reap()
            live = [w for w in self.workers if w.returncode is None]
            if not live:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for worker in live:
                    _say(f"worker {worker.index} (pid {worker.process.pid}) did not stop within "
                         f"{self.stop_timeout:g} s; killing it")
                    worker.process.kill()
                    worker.process.wait()
                    worker.returncode = worker.process.returncode
                code = code or EXIT_WORKER_DIED
                break
            self._wait(min(remaining, 1.0))
        for worker in self.workers:
            worker.control.close()
        # A worker that got our SIGTERM before its reactor installed its handlers dies of it: it was not yet
        # accepting, so nothing was in flight; that is a clean stop too.
        unclean = [w for w in self.workers if w.returncode not in (0, -signal.SIGTERM)]
        if code == 0 and unclean:
            failed = [f"worker {w.index}: {_status(w.returncode)}" for w in unclean]
            _say(f"workers did not stop cleanly ({', '.join(failed)})")
            return EXIT_WORKER_DIED
        return code


def _status(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"signal {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


def _say(message: str) -> None:
    print(f"vgw: {message}", file=sys.stderr, flush=True)
