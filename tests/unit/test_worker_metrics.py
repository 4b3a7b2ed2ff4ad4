"""The worker-thread gauges read a real Twisted thread pool: work running, work waiting for a thread."""

from __future__ import annotations

import threading
import time

from prometheus_client.parser import text_string_to_metric_families
from twisted.python.threadpool import ThreadPool

from adapters.http.metrics import HttpMetrics


def sample(metrics: HttpMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name)


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.01)


def test_busy_workers_and_backlog_follow_the_pool():
    pool = ThreadPool(minthreads=0, maxthreads=2, name="test-workers")
    pool.start()
    metrics = HttpMetrics(thread_pool=lambda: pool)
    release = threading.Event()
    try:
        assert (sample(metrics, "vgw_http_workers_busy"), sample(metrics, "vgw_http_worker_backlog")) == (0, 0)
        for _ in range(5):
            pool.callInThread(release.wait, 10)
        wait_for(lambda: sample(metrics, "vgw_http_workers_busy") == 2)
        assert sample(metrics, "vgw_http_worker_backlog") == 3
        release.set()
        wait_for(lambda: (sample(metrics, "vgw_http_workers_busy"), sample(metrics, "vgw_http_worker_backlog"))
                 == (0, 0))
    finally:
        release.set()
        pool.stop()


def test_a_scrape_served_from_a_worker_does_not_count_itself():
    """The plain-HTTP metrics port renders in the pool (WSGI); a scrape is not a request at work."""
    pool = ThreadPool(minthreads=0, maxthreads=2, name="test-scrape")
    pool.start()
    metrics = HttpMetrics(thread_pool=lambda: pool)
    release, scraped = threading.Event(), []
    try:
        pool.callInThread(release.wait, 10)
        wait_for(lambda: sample(metrics, "vgw_http_workers_busy") == 1)
        pool.callInThread(lambda: scraped.append(metrics.exposition().decode()))
        wait_for(lambda: scraped)
    finally:
        release.set()
        pool.stop()
    values = {s.name: s.value for family in text_string_to_metric_families(scraped[0]) for s in family.samples}
    assert values["vgw_http_workers_busy"] == 1 and values["vgw_http_worker_backlog"] == 0
