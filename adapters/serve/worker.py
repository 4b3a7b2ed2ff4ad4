"""One worker process of ``vgw serve --workers N`` (``python -m adapters.serve.worker CONTROL_FD``).

Started only by :class:`adapters.serve.pool.WorkerPool`, never by hand: it reads its settings and the
inherited listening sockets' numbers from the control socket, then runs the same gateway as a single
process (:func:`adapters.serve.command.run_gateway`) with a :class:`WorkerSeat` that adapts it to sharing:
adopted listeners, metrics shared through files, a worker header, readiness told to the supervisor, and a
stop when the supervisor goes away.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import traceback

from twisted.internet import protocol

from adapters.command_line import EXIT_INTERNAL, EXIT_USAGE, CliError
from adapters.serve.pool import READY, WorkerSpec, receive_spec

WORKER_HEADER = b"X-VGW-Worker"


class _Lifeline(protocol.Protocol):
    """The control socket inside the reactor: says ready once running, stops the reactor on EOF (the
    supervisor is gone, however it died), so no worker outlives it."""

    def connectionLost(self, reason) -> None:
        from twisted.internet.error import ReactorNotRunning

        try:
            self.factory.reactor.stop()
        except ReactorNotRunning:  # already stopping (SIGTERM closes every connection, this one too)
            return
        self.factory.seat.orphaned = True


class WorkerSeat:
    """What makes :func:`run_gateway` a worker rather than a whole gateway; see the module docstring."""

    def __init__(self, spec: WorkerSpec, control: socket.socket) -> None:
        from adapters.serve.multiprocess_metrics import SharedMetrics

        self.spec = spec
        self.control = control
        self.metrics = SharedMetrics(spec.metrics_dir)
        self.orphaned = False
        """True once the supervisor went away without stopping us: nobody else will remove the metrics files."""

    def start(self, reactor, site, tls) -> None:
        """Adopt the supervisor's listeners (before the reactor runs) and report ready once it does."""
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from adapters.serve.multiprocess_metrics import make_shared_metrics_site

        self._name_responses(site)
        # What listenSSL does for a port of its own: TLS in memory BIOs around the site.
        reactor.adoptStreamPort(self.spec.https_fd, self.spec.https_family, TLSMemoryBIOFactory(tls, False, site))
        os.close(self.spec.https_fd)  # adoptStreamPort works on its own duplicate
        if self.spec.metrics_fd is not None:
            reactor.adoptStreamPort(self.spec.metrics_fd, self.spec.metrics_family,
                                    make_shared_metrics_site(self.metrics))
            os.close(self.spec.metrics_fd)
        self.metrics.start_publishing(reactor)
        self.control.setblocking(False)
        lifeline = protocol.Factory.forProtocol(_Lifeline)
        lifeline.reactor, lifeline.seat = reactor, self
        reactor.addSystemEventTrigger("after", "shutdown", self._remove_metrics_if_orphaned)
        transport = reactor.adoptStreamConnection(self.control.fileno(), socket.AF_UNIX, lifeline)
        self.control.close()  # the reactor holds its own duplicate
        reactor.callWhenRunning(transport.write, READY)

    def _remove_metrics_if_orphaned(self) -> None:
        """A supervisor killed outright cannot remove the metrics directory; its workers do, each as it
        stops (whichever is first; the others' open files stay valid until they exit)."""
        if self.orphaned:
            shutil.rmtree(self.spec.metrics_dir, ignore_errors=True)

    def _name_responses(self, site) -> None:
        """Every response names the worker that made it (``X-VGW-Worker: 2``): which one answered is then
        visible when tracing a request, and a test can see that every worker serves."""
        index = str(self.spec.index).encode("ascii")

        class WorkerRequest(site.requestFactory):
            def process(self):
                self.setHeader(WORKER_HEADER, index)
                return super().process()

        site.requestFactory = WorkerRequest


def main(argv: list[str]) -> int:
    from adapters.serve.command import run_gateway

    control = socket.socket(fileno=int(argv[0]))
    spec = receive_spec(control)
    try:
        return run_gateway(spec.settings, WorkerSeat(spec, control))
    except CliError as exc:
        print(f"vgw: worker {spec.index}: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except Exception as exc:  # our bug: one line, the traceback on request, as the vgw command does
        print(f"vgw: worker {spec.index}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        if os.environ.get("VGW_DEBUG"):
            traceback.print_exc()
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
