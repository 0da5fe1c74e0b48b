"""The token bucket: a refused take takes nothing, a take over the burst can never succeed."""

from __future__ import annotations

import math

import pytest

from tiergate.sender.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# (name, rate, burst, [(advance seconds, take count, admitted?)], tokens left)
CASES = [
    ("full bucket admits the burst", 500.0, 1000.0, [(0, 1000, True)], 0.0),
    ("refused take keeps the tokens", 500.0, 1000.0, [(0, 600, True), (0, 600, False), (0, 50, True)], 350.0),
    ("refill after idle admits again", 500.0, 1000.0, [(0, 1000, True), (2, 1000, True)], 0.0),
    ("refill stops at the burst", 10.0, 20.0, [(0, 20, True), (100, 21, False)], 20.0),
    ("single tokens", 2.0, 2.0, [(0, 1, True), (0, 1, True), (0, 1, False), (0.5, 1, True)], 0.0),
    ("over the burst never fits", 500.0, 1000.0, [(0, 1001, False), (60, 1001, False)], 1000.0),
]


@pytest.mark.parametrize(("name", "rate", "burst", "steps", "left"), CASES, ids=[c[0] for c in CASES])
def test_take_is_all_or_nothing(
    name: str, rate: float, burst: float, steps: list[tuple[float, int, bool]], left: float
) -> None:
    clock = Clock()
    bucket = TokenBucket(rate, burst=burst, clock=clock)
    for advance, count, admitted in steps:
        clock.now += advance
        assert bucket.try_acquire(count) is admitted, (advance, count)
    assert bucket._tokens == pytest.approx(left)


# (rate, burst, taken first, asked, seconds until)
WAITS = [
    (500.0, 1000.0, 1000, 1000, 2.0),
    (500.0, 1000.0, 600, 600, 0.4),
    (500.0, 1000.0, 0, 10, 0.0),
    (500.0, 1000.0, 0, 1001, math.inf),
]


@pytest.mark.parametrize(("rate", "burst", "taken", "asked", "seconds"), WAITS)
def test_seconds_until_a_take_fits(rate: float, burst: float, taken: int, asked: int, seconds: float) -> None:
    bucket = TokenBucket(rate, burst=burst, clock=Clock())
    assert bucket.try_acquire(taken)
    assert bucket.seconds_until(asked) == pytest.approx(seconds)
