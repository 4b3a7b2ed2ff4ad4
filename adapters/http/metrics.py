"""Prometheus metrics of the gateway (``prometheus_client``), kept in the API's own registry, which both
``/metrics`` routes serve: the HTTP API's, its worker threads', and the AMQP intake's.

No label carries an agency, a voucher id or a raw path: routes are the routing table's templates
(``/v1/vouchers/<string:voucher_id>``) and codes are the stable error codes, so the number of series is
bounded by the code, not by callers.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds; intake's p99 target is 50 ms, verification of a large voucher takes longer.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """``thread_pool`` returns the pool the handlers' blocking work runs in (default: the reactor's, the
    one ``deferToThread`` uses); it is read at each scrape, so the gauges are never stale."""

    def __init__(self, registry: CollectorRegistry | None = None, *, thread_pool: Callable[[], object] | None = None
                 ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._thread_pool = thread_pool or _reactor_thread_pool
        self.accepted = Counter("vgw_vouchers_accepted", "Voucher revisions accepted and stored (answered 202)",
                                registry=self.registry)
        self.refusals = Counter("vgw_refusals", "Requests refused, by stable error code", ["code"],
                                registry=self.registry)
        self.requests = Counter("vgw_http_requests", "HTTP requests answered, by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("vgw_http_request_duration_seconds",
                                 "Time from the request's arrival to its last byte written, by route",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        # multiprocess_mode: how `vgw serve --workers N` combines the workers' values (adapters/serve/multiprocess_metrics).
        self.in_flight = Gauge("vgw_http_requests_in_flight", "Requests received and not yet answered",
                               registry=self.registry, multiprocess_mode="livesum")
        # Where requests queue when the gateway is saturated: in flight = waiting + running + being written.
        self.worker_backlog = Gauge("vgw_http_worker_backlog", "Blocking work (verification, the store) waiting "
                                    "for a free worker thread", registry=self.registry,
                                    multiprocess_mode="livesum")
        self.worker_backlog.set_function(lambda: self._thread_pool().q.qsize())
        self.workers_busy = Gauge("vgw_http_workers_busy", "Worker threads running blocking work now (not "
                                  "counting the scrape reading this)", registry=self.registry,
                                  multiprocess_mode="livesum")
        self.workers_busy.set_function(self._busy_workers)

    def observe(self, *, route: str, method: str, status: int, code: str | None, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)
        if status == 202 and route == "/v1/vouchers" and method == "POST":
            self.accepted.inc()
        if status >= 400 and code:
            self.refusals.labels(code).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def _busy_workers(self) -> int:
        pool = self._thread_pool()
        busy = len(pool.working)
        # The plain-HTTP /metrics port renders in a worker thread itself; that one is not a request.
        return busy - 1 if busy and threading.current_thread() in pool.threads else busy


def _reactor_thread_pool():
    from twisted.internet import reactor  # not at import: importing this module must not pick a reactor

    return reactor.getThreadPool()


class AmqpMetrics:
    """The AMQP intake's gauges, labelled by queue: is its consumer connected and consuming, and how many
    messages wait in its queue (ready, not yet delivered), as the consumer last asked the broker. While
    disconnected the depth is unknown, so its series is removed (NaN with several workers) rather than left at
    a stale number."""

    def __init__(self, registry: CollectorRegistry, queue: str) -> None:
        self.queue = queue
        self.connected = Gauge("vgw_amqp_connected", "1 while the AMQP intake consumes from its queue, else 0",
                               ["queue"], registry=registry, multiprocess_mode="livemin").labels(queue)
        self._depth = Gauge("vgw_amqp_queue_messages", "Messages ready in the AMQP intake queue, as the consumer "
                            "last saw them (every few seconds; absent while disconnected)", ["queue"],
                            registry=registry, multiprocess_mode="livemostrecent")

    def set_depth(self, messages: int) -> None:
        self._depth.labels(self.queue).set(messages)

    def forget_depth(self) -> None:
        if _multiprocess():  # the workers' shared files cannot drop a series: NaN says "unknown" there
            self._depth.labels(self.queue).set(math.nan)
        else:
            self._depth.remove(self.queue)  # a no-op when absent


def _multiprocess() -> bool:
    """prometheus_client's own test for its multiprocess mode (``vgw serve --workers N``)."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ
