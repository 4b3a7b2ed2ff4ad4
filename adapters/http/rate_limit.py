"""Per-agency rate limiting: one token bucket per calling agency.

Pure apart from the clock it is handed (seconds, monotonic), so tests drive it without sleeping. Used on
the reactor thread only (the HTTP adapter checks a request before any work goes to the thread pool), so it
takes no lock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """``rate`` tokens per second refill a bucket of at most ``burst`` tokens; one request takes one.
    ``rate == 0`` turns limiting off."""

    rate: float = 50.0
    burst: int = 100

    def __post_init__(self) -> None:
        if not math.isfinite(self.rate) or self.rate < 0:
            raise ValueError(f"the rate must be a finite number >= 0, not {self.rate!r}")
        if not isinstance(self.burst, int) or isinstance(self.burst, bool) or self.burst < 1:
            raise ValueError(f"the burst must be an int >= 1, not {self.burst!r}")

    @property
    def enabled(self) -> bool:
        return self.rate > 0


class AgencyRateLimiter:
    """Token buckets keyed by agency. :meth:`take` answers 0 when the request may go ahead, otherwise the
    whole seconds (at least 1) after which one token will be back: the ``Retry-After`` value."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # agency -> (tokens, at)

    def take(self, agency: str) -> int:
        if not self.limit.enabled:
            return 0
        now = self.clock()
        tokens, at = self._buckets.get(agency, (float(self.limit.burst), now))
        tokens = min(float(self.limit.burst), tokens + max(0.0, now - at) * self.limit.rate)
        if tokens >= 1.0:
            self._buckets[agency] = (tokens - 1.0, now)
            return 0
        self._buckets[agency] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.limit.rate))
