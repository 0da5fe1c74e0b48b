"""How a worker spreads traffic over its upstream connectors: pure decisions, time passed in.

Three small pieces, each a plain object over an injected clock so that unit tests drive them
with a table of times and events:

- `AimdRate`: a connector's send rate. It starts at the contracted `tps`; a throttle answer
  (``ESME_RTHROTTLED``, ``ESME_RMSGQFUL``, HTTP 429) multiplies it by `decrease` (at most once
  per `hold`, since one congestion event answers a whole window of submits at once), and it
  climbs back linearly by `increase` times `tps` per second, never above `tps`. When throttling
  lasts (`SETTLE` seconds), what the carrier accepted in a second with a cut is its ceiling
  (`accepted`): when that is under 90 % of `tps` (a carrier that takes less than the
  contract), the climb slows from 90 % of the ceiling up (to a tenth of the
  climb, at most a tenth of the ceiling per second), so the rate settles just under what the
  carrier takes instead of overshooting it each cycle.
- `CircuitBreaker`: a connector that failed `threshold` submits in a row is skipped for
  `open_for` seconds; then one submit is let through as the recovery probe (half-open). The
  probe's success closes the circuit; its failure opens it again for twice as long (at most
  `max_open_for`).
- `choose`: the route of one destination. The connectors serving it are those with a prefix
  of the destination, or with no prefixes. Of those that can take a submit now, the lowest
  `failover` order wins; within it, a connector is drawn by `weight` among those with no
  backlog (waiting for their rate), else the one whose backlog clears first.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass

BACKLOG_FREE = 0.005
# Seconds of throttling before the carrier's accepted rate counts as its ceiling (a short burst
# that refused everything is not a ceiling).
SETTLE = 3.0


class AimdRate:
    """A send rate that falls multiplicatively on throttling and climbs back additively."""

    def __init__(
        self,
        tps: float,
        *,
        decrease: float = 0.7,
        increase: float = 0.5,
        hold: float = 0.5,
        floor: float = 0.05,
        now: float = 0.0,
    ) -> None:
        if tps <= 0:
            raise ValueError("tps must be positive")
        self.tps = tps
        self.decrease = decrease
        self.increase = increase
        self.hold = hold
        self.floor = max(1.0, tps * floor)
        self._rate = tps
        self._stamp = now
        self._last_decrease = -float("inf")
        self.throttled_since: float | None = None
        self.ceiling: float | None = None
        self._above = 0

    def _knee(self) -> float:
        """Where the climb slows: 90 % of the ceiling, or `tps` when there is none that counts."""
        if self.ceiling is None or self.ceiling >= 0.9 * self.tps:
            return self.tps
        return 0.9 * self.ceiling

    def rate(self, now: float) -> float:
        """The allowed rate at `now`, in submits per second."""
        fast, knee = self.increase * self.tps, self._knee()
        elapsed = max(0.0, now - self._stamp)
        start = self._rate
        if start < knee:
            to_knee = (knee - start) / fast if fast > 0 else float("inf")
            if elapsed <= to_knee:
                return min(self.tps, start + fast * elapsed)
            start, elapsed = knee, elapsed - to_knee
        slow = min(fast / 10, knee / 10) if knee < self.tps else fast
        return min(self.tps, start + slow * elapsed)

    def throttled(self, now: float) -> bool:
        """Record a throttle answer; True when it lowered the rate (a new congestion event)."""
        if self.throttled_since is None:
            self.throttled_since = now
        if now - self._last_decrease < self.hold:
            return False
        self._rate = max(self.floor, self.rate(now) * self.decrease)
        self._stamp = now
        self._last_decrease = now
        return True

    def accepted(self, per_second: float, now: float) -> None:
        """Record a full second (ending at `now`) in which the carrier accepted `per_second` submits.

        A second that had a cut, `SETTLE` seconds or more into a throttling episode, shows the
        carrier's ceiling (averaged with the one before, so one burst second moves it half way),
        and the rate drops to it at once. Two seconds in a row without a cut, each above the
        ceiling by a tenth, forget it (the carrier takes more now, or an outage ended).
        """
        if self.throttled_since is None:
            return
        if now - self._last_decrease < 1.0:
            self._above = 0
            if now - self.throttled_since < SETTLE or per_second < self.floor:
                return
            ceiling = per_second if self.ceiling is None else (self.ceiling + per_second) / 2
            self._rate, self._stamp = min(self.rate(now), ceiling), now
            self.ceiling = ceiling
        elif self.ceiling is not None and per_second > 1.1 * self.ceiling:
            self._above += 1
            if self._above >= 2:
                self._rate, self._stamp = self.rate(now), now
                self.ceiling, self._above = None, 0
        else:
            self._above = 0

    def recovered(self, now: float) -> bool:
        """True once, when the rate is back at `tps` after a throttle."""
        if self.throttled_since is not None and self.rate(now) >= self.tps:
            self.throttled_since = None
            self.ceiling = None
            return True
        return False


class Circuit(enum.Enum):
    """State of a connector's circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Skips a connector that keeps failing, and probes it with one submit to recover."""

    def __init__(self, *, threshold: int = 5, open_for: float = 5.0, max_open_for: float = 60.0) -> None:
        self.threshold = threshold
        self.base_open_for = open_for
        self.max_open_for = max_open_for
        self.open_for = open_for
        self.failures = 0
        self._opened_at: float | None = None
        self._probing = False

    def state(self, now: float) -> Circuit:
        """Closed, open (skipped), or half-open (a probe may go)."""
        if self._opened_at is None:
            return Circuit.CLOSED
        if now - self._opened_at < self.open_for:
            return Circuit.OPEN
        return Circuit.HALF_OPEN

    def allows(self, now: float) -> bool:
        """Whether a submit may be routed here now (in half-open, only while no probe is out)."""
        if self._opened_at is None:
            return True
        match self.state(now):
            case Circuit.CLOSED:
                return True
            case Circuit.OPEN:
                return False
            case Circuit.HALF_OPEN:
                return not self._probing

    def sent(self, now: float) -> bool:
        """Note a submit routed here; True when it is the recovery probe."""
        if self._opened_at is not None and self.state(now) is Circuit.HALF_OPEN:
            self._probing = True
            return True
        return False

    def succeeded(self) -> bool:
        """Record a submit that reached the upstream; True when this closed an open circuit."""
        self.failures = 0
        if self._opened_at is None:
            return False  # closed: no probe out and `open_for` already at its base
        self._opened_at = None
        self._probing = False
        self.open_for = self.base_open_for
        return True

    def failed(self, now: float) -> bool:
        """Record a failed submit; True when this opened the circuit."""
        if self._opened_at is not None:
            if self._probing or self.state(now) is Circuit.HALF_OPEN:
                self.open_for = min(self.max_open_for, self.open_for * 2)
                self._opened_at = now
                self._probing = False
                return True
            return False
        self.failures += 1
        if self.failures >= self.threshold:
            self._opened_at = now
            return True
        return False


@dataclass(frozen=True)
class Candidate:
    """What routing needs to know of one connector right now."""

    name: str
    prefixes: tuple[str, ...]
    failover: int
    weight: float
    available: bool
    backlog: float = 0.0

    def serves(self, destination: str) -> bool:
        """Whether this connector carries traffic to `destination`."""
        return not self.prefixes or destination.startswith(self.prefixes)


def choose(destination: str, candidates: Sequence[Candidate], rng: random.Random) -> Candidate | None:
    """The connector for `destination`, or None when no connector serving it can take it now."""
    usable = [c for c in candidates if c.available and c.serves(destination)]
    if not usable:
        return None
    first = min(c.failover for c in usable)
    group = [c for c in usable if c.failover == first]
    if len(group) == 1:
        return group[0]
    free = [c for c in group if c.backlog <= BACKLOG_FREE]
    if not free:
        return min(group, key=lambda c: c.backlog)
    if len(free) == 1:
        return free[0]
    return rng.choices(free, weights=[c.weight for c in free])[0]


def served_prefixes(candidates: Sequence[Candidate]) -> tuple[str, ...]:
    """Every prefix some connector serves ("" for a connector that serves every destination)."""
    prefixes: set[str] = set()
    for c in candidates:
        prefixes.update(c.prefixes or ("",))
    return tuple(sorted(prefixes))


def unserved(candidates: Sequence[Candidate], bound: Sequence[bool]) -> list[str]:
    """The served prefixes that no bound connector serves (readiness fails on each)."""
    live = [c for c, b in zip(candidates, bound, strict=True) if b]
    return [p for p in served_prefixes(candidates) if not any(c.serves(p) for c in live)]
