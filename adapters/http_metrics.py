"""Prometheus metrics of the HTTP API (``prometheus_client``), kept in the API's own registry.

No label carries an agency, a voucher id or a raw path: routes are the routing table's templates
(``/v1/vouchers/<string:voucher_id>``) and codes are the stable error codes, so the number of series is
bounded by the code, not by callers.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds; intake's p99 target is 50 ms, verification of a large voucher takes longer.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.accepted = Counter("vgw_vouchers_accepted", "Voucher revisions accepted and stored (answered 202)",
                                registry=self.registry)
        self.refusals = Counter("vgw_refusals", "Requests refused, by stable error code", ["code"],
                                registry=self.registry)
        self.requests = Counter("vgw_http_requests", "HTTP requests answered, by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("vgw_http_request_duration_seconds",
                                 "Time from the request's arrival to its last byte written, by route",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("vgw_http_requests_in_flight", "Requests received and not yet answered",
                               registry=self.registry)

    def observe(self, *, route: str, method: str, status: int, code: str | None, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)
        if status == 202 and route == "/v1/vouchers" and method == "POST":
            self.accepted.inc()
        if status >= 400 and code:
            self.refusals.labels(code).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
