"""The per-agency token bucket, driven by a fake clock."""

from __future__ import annotations

import pytest

from adapters.http.rate_limit import AgencyRateLimiter, RateLimit


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_rate_refills_one_token_at_a_time():
    clock = FakeClock()
    limiter = AgencyRateLimiter(RateLimit(rate=2.0, burst=3), clock)
    assert [limiter.take("A") for _ in range(4)] == [0, 0, 0, 1]
    clock.now += 0.5                      # one token back
    assert [limiter.take("A"), limiter.take("A")] == [0, 1]
    assert limiter.take("B") == 0         # each agency has its own bucket
    clock.now += 60                       # never more than the burst
    assert [limiter.take("A") for _ in range(4)] == [0, 0, 0, 1]


def test_retry_after_is_the_whole_seconds_until_the_next_token():
    clock = FakeClock()
    limiter = AgencyRateLimiter(RateLimit(rate=0.1, burst=1), clock)
    assert limiter.take("A") == 0
    assert limiter.take("A") == 10
    clock.now += 9.5
    assert limiter.take("A") == 1


def test_a_rate_of_zero_turns_limiting_off_and_nonsense_is_refused():
    limiter = AgencyRateLimiter(RateLimit(rate=0, burst=1), FakeClock())
    assert all(limiter.take("A") == 0 for _ in range(1000))
    for bad in [dict(rate=-1, burst=1), dict(rate=float("nan"), burst=1), dict(rate=1, burst=0)]:
        with pytest.raises(ValueError):
            RateLimit(**bad)


def test_settings_come_from_the_environment_and_a_bad_value_names_its_variable():
    from adapters.http.settings import ApiSettings

    settings = ApiSettings.from_environ({"VGW_LIMITS_RATE": "2.5", "VGW_LIMITS_BURST": "7",
                                         "VGW_METRICS_LISTEN": "127.0.0.1:9100"})
    assert (settings.rate_limit, settings.metrics_listen) == (RateLimit(2.5, 7), ("127.0.0.1", 9100))
    assert ApiSettings.from_environ({}).rate_limit == RateLimit(50.0, 100)
    with pytest.raises(ValueError, match="VGW_LIMITS_BURST"):
        ApiSettings.from_environ({"VGW_LIMITS_BURST": "many"})
