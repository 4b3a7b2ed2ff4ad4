"""The AMQP intake's reconnect waits: doubling from half a second, capped at 5 s, jittered in the upper half."""

from __future__ import annotations

import random
from itertools import islice

from adapters.amqp.intake import Backoff


def test_the_bound_doubles_up_to_the_cap():
    assert list(islice(Backoff().delays(rand=lambda: 1.0), 7)) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_each_wait_lies_in_the_upper_half_of_its_bound():
    assert list(islice(Backoff().delays(rand=lambda: 0.0), 6)) == [0.25, 0.5, 1.0, 2.0, 2.5, 2.5]
    rng = random.Random(7)
    waits = list(islice(Backoff(first=0.1, factor=3.0, cap=2.0).delays(rand=rng.random), 50))
    bounds = [0.1, 0.3, 0.9, 2.0] + [2.0] * 46
    assert all(bound / 2 <= wait <= bound for wait, bound in zip(waits, bounds, strict=True))
    assert len(set(waits[4:])) > 1, "jittered, not one fixed wait"


def test_a_first_wait_above_the_cap_is_capped():
    assert next(Backoff(first=10.0, cap=5.0).delays(rand=lambda: 1.0)) == 5.0
