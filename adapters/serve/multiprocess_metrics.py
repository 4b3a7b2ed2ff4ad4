"""The gateway's metrics when several worker processes serve (``vgw serve --workers N``): totals, not shares.

Each worker counts into files in the supervisor's directory (prometheus_client's multiprocess mode, switched
on by ``PROMETHEUS_MULTIPROC_DIR`` before prometheus_client is imported); a scrape, whichever worker answers
it, on the mTLS ``/metrics`` route or the plain metrics port, reads every worker's files. So counters and
histograms are sums over the workers (also of a worker that has exited), and each gauge is combined as its
definition in :mod:`adapters.http.metrics` says (``multiprocess_mode``: in-flight, backlog and busy threads
are summed over live workers).

The thread-pool gauges are computed when read (``set_function``), which a file cannot hold; each worker
therefore copies them into its file every :data:`PUBLISH_SECONDS` and just before it answers a scrape, so
another worker's share is at most that old.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from twisted.web import resource, server

from adapters.http.metrics import METRICS_CONTENT_TYPE, HttpMetrics

PUBLISH_SECONDS = 1.0


class SharedMetrics(HttpMetrics):
    """``registry`` stays this worker's own (metrics are registered there, the AMQP intake's too); only
    :meth:`exposition` reads all workers."""

    def __init__(self, directory: str) -> None:
        super().__init__(CollectorRegistry(auto_describe=True))
        self.directory = directory

    def publish_computed(self) -> None:
        """Write this worker's computed gauges into its file, where the other workers' scrapes read them."""
        for gauge, name in ((self.worker_backlog, "vgw_http_worker_backlog"),
                            (self.workers_busy, "vgw_http_workers_busy")):
            value = self.registry.get_sample_value(name)
            if value is not None:
                gauge.set(value)

    def exposition(self) -> bytes:
        self.publish_computed()
        everyone = CollectorRegistry()
        MultiProcessCollector(everyone, path=self.directory)
        return generate_latest(everyone)

    def start_publishing(self, reactor) -> None:
        from twisted.internet.task import LoopingCall

        LoopingCall(self.publish_computed).start(PUBLISH_SECONDS, now=True)


class _Exposition(resource.Resource):
    isLeaf = True

    def __init__(self, metrics: HttpMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request) -> bytes:
        request.setHeader(b"Content-Type", METRICS_CONTENT_TYPE.encode("ascii"))
        return self.metrics.exposition()


def make_shared_metrics_site(metrics: HttpMetrics) -> server.Site:
    """The plain-HTTP metrics port of a worker: ``GET /metrics`` only, every worker's totals."""
    root = resource.Resource()
    root.putChild(b"metrics", _Exposition(metrics))
    site = server.Site(root, timeout=30.0)
    site.displayTracebacks = False
    return site
