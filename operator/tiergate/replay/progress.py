"""A replay job's own progress record and the pure rules the engine runs by.

The store keeps a job's counters (claims update them atomically) and gives the engine one
opaque text column, ``cursor``, for everything else it must remember across a restart: the
page cursor over the job's discards, how many discards were too old to resend, whether the
job may share its traffic classes with another running job, and what a dry run found.
`Progress` is that record: frozen, each step returns a new one, serialized as JSON.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from tiergate.store import DiscardEvent, ReplayJob

VERSION = 1


@dataclass(frozen=True, slots=True)
class Progress:
    """What a job's runner has done so far, beyond the store's counters."""

    started: bool = False
    finished: bool = False
    page: str | None = None
    too_old: int = 0
    allow_concurrent: bool = False
    would_replay: int | None = None

    def encode(self) -> str:
        """The JSON kept in the job's cursor column."""
        return json.dumps({"v": VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def decode(cls, text: str | None) -> Progress:
        """Parse `encode`'s output; a missing or foreign cursor is a fresh start."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except ValueError:
            return cls()
        if not isinstance(data, dict) or data.get("v") != VERSION:
            return cls()
        data.pop("v")
        fields = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in fields})

    def after_page(self, next_page: str | None, too_old: int) -> Progress:
        """Progress once a page was handled; the last page finishes the job."""
        return replace(
            self,
            started=True,
            page=next_page,
            too_old=self.too_old + too_old,
            finished=next_page is None,
        )


def progress_of(job: ReplayJob) -> Progress:
    """The progress record of a stored job."""
    return Progress.decode(job.cursor)


def traffic_classes(job: ReplayJob) -> frozenset[str] | None:
    """The traffic classes a job touches; None means every class."""
    return frozenset(job.filter.traffic_classes) or None


def conflicts(job: ReplayJob, running: Iterable[ReplayJob]) -> ReplayJob | None:
    """The running job that keeps `job` waiting, if any (one job per traffic class)."""
    if job.dry_run or progress_of(job).allow_concurrent:
        return None
    mine = traffic_classes(job)
    for other in running:
        if other.id == job.id or other.dry_run:
            continue
        theirs = traffic_classes(other)
        if mine is None or theirs is None or mine & theirs:
            return other
    return None


def effective_rate(requested: float | None, cap: float | None) -> float | None:
    """The rate a job runs at: what it asked for, never above the upstream cap."""
    if requested is None:
        return cap
    if cap is None:
        return requested
    return min(requested, cap)


def batch_size(rate: float | None, largest: int) -> int:
    """Claims per store transaction: about a tenth of a second's worth at `rate`."""
    if rate is None:
        return largest
    return max(1, min(largest, math.floor(rate / 10)))


def split_by_age(
    items: Sequence[DiscardEvent], max_age: float | None, now: datetime
) -> tuple[list[DiscardEvent], list[DiscardEvent]]:
    """(fresh, too old): a message accepted more than `max_age` seconds ago is not resent."""
    if max_age is None:
        return list(items), []
    fresh: list[DiscardEvent] = []
    stale: list[DiscardEvent] = []
    for item in items:
        age = (now - item.message_created_at).total_seconds()
        (stale if age > max_age else fresh).append(item)
    return fresh, stale


class Pacer:
    """A token bucket taken in batches: `take(n)` returns when n messages may go."""

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, n: int) -> None:
        """Wait until `n` tokens are there, then spend them."""
        if n <= 0:
            return
        need = float(n)
        while True:
            self._refill()
            # A hair of tolerance: float refills can land a rounding error short of `need`.
            if self._tokens + 1e-9 >= min(need, self.burst):
                self._tokens -= need
                return
            await self._sleep((min(need, self.burst) - self._tokens) / self.rate)
