"""Work-queue metrics: how many voucher revisions wait in each workflow state, and how many are overdue.

Read from the store on a timer rather than counted in memory, because with several gateway processes
(and after restarts) only the store knows the truth. The gauges are per status (``received`` waits for
the reviewer, ``held`` for a treasury operator, …) across all agencies; agencies see their own queues
through ``GET /v1/queues/{role}``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge
from twisted.logger import Logger

from adapters.clock import utc_now
from adapters.periodic import every
from gateway.business_time import TAIPEI
from gateway.workflow.transitions import AWAITING, Status

log = Logger(namespace="vgw.queues")

REFRESH_SECONDS = 15.0
QUEUE_STATUSES = [status.value for status in (*AWAITING, Status.RELEASED, Status.REJECTED,
                                                Status.TREASURY_ACCEPTED, Status.BATCHED)]
"""The states something or someone must still act on."""


class WorkflowQueueMetrics:
    def __init__(self, registry: CollectorRegistry, store, clock: Callable[[], datetime.datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock
        # livemostrecent: every worker reads the same store, so the freshest reading is the answer.
        self.items = Gauge("vgw_workflow_queue_items", "Voucher revisions waiting in a workflow state",
                           ["status"], registry=registry, multiprocess_mode="livemostrecent")
        self.overdue = Gauge("vgw_workflow_queue_overdue", "Of those, the ones past their due date (Taipei)",
                             ["status"], registry=registry, multiprocess_mode="livemostrecent")

    def refresh(self) -> None:
        today = self.clock().astimezone(TAIPEI).date()
        counts = self.store.queue_counts(QUEUE_STATUSES, overdue_before=today)
        for status, (items, overdue) in counts.items():
            self.items.labels(status).set(items)
            self.overdue.labels(status).set(overdue)


def start_refreshing(metrics: WorkflowQueueMetrics, seconds: float = REFRESH_SECONDS) -> None:
    """Refresh now and every ``seconds``, in the thread pool (a store round trip)."""
    every(seconds, metrics.refresh, log=log, what="queue metrics refresh")
