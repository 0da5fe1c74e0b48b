"""A token bucket: a connector never submits faster than its contract allows, and the ingest
API admits a customer's batch whole or not at all (a refused batch takes no tokens)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """Allows `rate` acquisitions per second on average, bursting to `burst`."""

    def __init__(
        self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_acquire(self, count: int = 1) -> bool:
        """Take `count` tokens if they are all there, without waiting; else take none."""
        self._refill()
        if self._tokens >= count:
            self._tokens -= count
            return True
        return False

    def seconds_until(self, count: int) -> float:
        """Seconds until `count` tokens are there (infinite if `count` is over the burst)."""
        self._refill()
        if count > self.burst:
            return float("inf")
        return max(0.0, (count - self._tokens) / self.rate)

    async def acquire(self) -> None:
        """Wait until a token is available, then take it."""
        async with self._lock:
            while True:
                self._refill()
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)
