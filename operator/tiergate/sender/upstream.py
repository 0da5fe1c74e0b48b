"""A worker's upstream: its connectors, each with binds, a shared rate and a circuit breaker.

`Link` is one configured connector. Its binds (SMPP sessions or HTTP clients) share one token
bucket whose rate follows the connector's `AimdRate`, so the contracted `tps` holds across the
binds and a throttle answer slows every bind of that connector, and only that connector.
`Upstream` holds the links and answers the two questions the worker asks: which link carries
this destination now (`tiergate.sender.routing.choose`), and which served prefixes have no
bound link (readiness).

Logs: a connector's first rate cut of a throttling episode is logged at warning with the
connector and the new rate, its return to `tps` at info; a circuit opening and closing too.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence

from prometheus_client import Counter

from tiergate.sender import metrics
from tiergate.sender.connectors.base import Connector, Outbound, ReceiptHandler
from tiergate.sender.connectors.config import ConnectorSpec, UpstreamSpec
from tiergate.sender.connectors.factory import connector_from_url
from tiergate.sender.errors import (
    PermanentError,
    ThrottledError,
    TransientError,
    UnavailableError,
)
from tiergate.sender.faults import Faults
from tiergate.sender.ratelimit import TokenBucket
from tiergate.sender.routing import AimdRate, Candidate, Circuit, CircuitBreaker, choose, unserved

log = logging.getLogger(__name__)

# A connector may catch up this much of its rate after a stall of the worker's loop (a smaller
# burst lost 6-12 % of a 500/s contract on a loaded 2-core machine).
BURST_SECONDS = 0.2
OBSERVED_FLOOR = 10.0


class Link:
    """One connector: its binds, its rate and its breaker."""

    def __init__(
        self,
        spec: ConnectorSpec,
        binds: Sequence[Connector],
        labels: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.binds = list(binds)
        self._clock = clock
        self.aimd: AimdRate | None = AimdRate(spec.tps, now=clock()) if spec.tps else None
        self.bucket: TokenBucket | None = None
        if self.aimd is not None:
            self._cap(self.aimd)
        self.breaker = CircuitBreaker()
        self.paused_until = 0.0
        self._next = 0
        self._second = (0, 0, 0)  # (second, submits in it, submits in the one before)
        self._episode_throttles = 0
        self.candidate = Candidate(spec.name, spec.prefixes, spec.failover, spec.weight, True)
        tags = dict(labels or {"tier": "", "revision": ""}, connector=spec.name)
        metrics.CONNECTOR_BINDS_BOUND.labels(**tags).set_function(self.bound_binds)
        metrics.CONNECTOR_RATE.labels(**tags).set_function(self.rate)
        metrics.CONNECTOR_CIRCUIT_OPEN.labels(**tags).set_function(
            lambda: 0 if self.breaker.state(self._clock()) is Circuit.CLOSED else 1
        )
        self._counted: dict[str, Counter] = {
            result: metrics.CONNECTOR_SUBMITS.labels(**tags, result=result)
            for result in ("ok", "error", "throttled", "rejected")
        }

    def _cap(self, aimd: AimdRate) -> None:
        burst = max(1.0, aimd.tps * BURST_SECONDS)
        self.bucket = TokenBucket(aimd.tps, burst=burst, clock=self._clock, rate_at=aimd.rate)

    def bound_binds(self) -> int:
        """How many binds are bound now."""
        return sum(1 for b in self.binds if b.bound)

    @property
    def bound(self) -> bool:
        """Whether at least one bind is bound."""
        return any(b.bound for b in self.binds)

    def rate(self) -> float:
        """The rate allowed now (0 when the connector has no cap)."""
        return self.aimd.rate(self._clock()) if self.aimd is not None else 0.0

    def available(self, now: float) -> bool:
        """Whether routing may send here now: bound, circuit not open, not paused."""
        return now >= self.paused_until and self.breaker.allows(now) and self.bound

    def view(self, now: float) -> Candidate:
        """This link as routing sees it now."""
        backlog = self.bucket.backlog() if self.bucket is not None else 0.0
        return Candidate(
            self.name, self.spec.prefixes, self.spec.failover, self.spec.weight, self.available(now), backlog
        )

    async def start(self) -> None:
        """Start binding every bind."""
        for bind in self.binds:
            await bind.start()

    async def close(self) -> None:
        """Close every bind."""
        for bind in self.binds:
            await bind.close()

    def _bind(self) -> Connector | None:
        count = len(self.binds)
        for step in range(count):
            bind = self.binds[(self._next + step) % count]
            if bind.bound:
                self._next = (self._next + step + 1) % count
                return bind
        return None

    async def submit(self, message: Outbound) -> str:
        """Submit within this connector's rate on one of its bound binds; the upstream id."""
        if self.bucket is not None:
            await self.bucket.acquire()
        now = self._clock()
        if now < self.paused_until or not self.breaker.allows(now):
            raise UnavailableError(f"Connector {self.name} is paused or its circuit is open", code="skipped")
        bind = self._bind()
        if bind is None:
            raise UnavailableError(f"Connector {self.name} has no bound bind", code="not-bound")
        if self.breaker.sent(now):
            log.info("Connector probed connector=%s circuit=half-open", self.name)
        try:
            upstream_id = await bind.submit(message)
        except ThrottledError as exc:
            self._counted["throttled"].inc()
            self._throttled(exc)
            raise
        except UnavailableError:
            raise
        except PermanentError:
            self._counted["rejected"].inc()
            self._succeeded()
            raise
        except TransientError as exc:
            self._counted["error"].inc()
            if self.breaker.failed(self._clock()):
                log.warning(
                    "Connector circuit opened connector=%s open_for=%.1fs error=%s",
                    self.name,
                    self.breaker.open_for,
                    exc.code or exc,
                )
            raise
        self._counted["ok"].inc()
        self._succeeded()
        self._observe(now)
        return upstream_id

    def _succeeded(self) -> None:
        if self.breaker.succeeded():
            log.info("Connector circuit closed connector=%s", self.name)
        if self.aimd is not None and self.aimd.recovered(self._clock()):
            log.info(
                "Connector rate recovered connector=%s rate=%.0f throttles=%d",
                self.name,
                self.aimd.tps,
                self._episode_throttles,
            )
            self._episode_throttles = 0
            if self.spec.tps is None:
                self.aimd, self.bucket = None, None

    def _observe(self, now: float) -> None:
        second = int(now)
        current, count, before = self._second
        if second == current:
            self._second = (current, count + 1, before)
        else:
            self._second = (second, 1, count if second == current + 1 else 0)
            if self.aimd is not None and second == current + 1:
                self.aimd.accepted(count, now)

    def observed_rate(self) -> float:
        """Submits accepted in the last full second (the ceiling for a connector without tps)."""
        current, count, before = self._second
        return float(before if int(self._clock()) == current else count)

    def _throttled(self, exc: ThrottledError) -> None:
        now = self._clock()
        self._episode_throttles += 1
        if self.aimd is None:
            self.aimd = AimdRate(max(OBSERVED_FLOOR, self.observed_rate()), now=now)
            self._cap(self.aimd)
        first = self.aimd.throttled_since is None
        if self.aimd.throttled(now):
            level = logging.WARNING if first else logging.DEBUG
            log.log(
                level,
                "Connector throttled, rate lowered connector=%s rate=%.0f tps=%.0f code=%s",
                self.name,
                self.aimd.rate(now),
                self.aimd.tps,
                exc.code,
            )
        if exc.retry_after and now + exc.retry_after > self.paused_until:
            if self.paused_until <= now:
                log.warning(
                    "Connector paused connector=%s seconds=%.1f rate=%.0f",
                    self.name,
                    exc.retry_after,
                    self.aimd.rate(now),
                )
            self.paused_until = now + exc.retry_after


class Upstream:
    """Every link of one worker, and the routing over them."""

    def __init__(
        self,
        links: Sequence[Link],
        *,
        faults: Faults | None = None,
        failing: Callable[[], bool] = lambda: True,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not links:
            raise ValueError("an upstream needs at least one link")
        self.links = list(links)
        self.faults = faults or Faults()
        self.failing = failing
        self._rng = random.Random(seed)
        self._clock = clock

    @classmethod
    def single(
        cls,
        connector: Connector,
        *,
        faults: Faults | None = None,
        failing: Callable[[], bool] = lambda: True,
        seed: int | None = None,
    ) -> Upstream:
        """One link named ``default`` around an existing connector, serving every destination."""
        spec = ConnectorSpec(
            name="default", url=connector.describe(), tps=connector.take_rate(), window=connector.window
        )
        return cls([Link(spec, [connector])], faults=faults, failing=failing, seed=seed)

    @property
    def window(self) -> int:
        """Submits all binds can have in flight."""
        return sum(link.spec.window * len(link.binds) for link in self.links)

    def on_receipt(self, handler: ReceiptHandler) -> None:
        """Register the receipt handler on every bind."""
        for link in self.links:
            for bind in link.binds:
                bind.on_receipt(handler)

    async def start(self) -> None:
        """Start every link."""
        for link in self.links:
            await link.start()

    async def close(self) -> None:
        """Close every link."""
        for link in self.links:
            await link.close()

    def _unbound_by_fault(self) -> bool:
        """Whether the ``no-bind`` fault (after ``fail-after``, if given) holds now."""
        return self.faults.no_bind and self.failing()

    @property
    def bound(self) -> bool:
        """Whether any connector has a bound bind."""
        return not self._unbound_by_fault() and any(link.bound for link in self.links)

    def can_send(self) -> bool:
        """Whether some connector could take a submit now."""
        now = self._clock()
        return not self._unbound_by_fault() and any(link.available(now) for link in self.links)

    def route(self, destination: str) -> Link | None:
        """The link to carry `destination` now, or None if no connector serving it can."""
        if self._unbound_by_fault():
            return None
        now = self._clock()
        if len(self.links) == 1:
            # `choose` over one candidate, without building its view on every submit.
            link = self.links[0]
            return link if link.candidate.serves(destination) and link.available(now) else None
        views = [link.view(now) for link in self.links]
        chosen = choose(destination, views, self._rng)
        if chosen is None:
            return None
        return self.links[views.index(chosen)]

    def unserved(self) -> list[str]:
        """Served prefixes with no bound connector ("" stands for every destination)."""
        faulted = self._unbound_by_fault()
        return unserved(
            [link.candidate for link in self.links], [link.bound and not faulted for link in self.links]
        )

    def should_fail(self) -> bool:
        """Draw whether the ``fail-submits`` fault fails this submit (once ``fail-after`` has passed)."""
        return self.faults.fail_submits > 0 and self.failing() and self.faults.should_fail_submit(self._rng)


def build_upstream(
    spec: UpstreamSpec,
    credentials: Mapping[str, tuple[str, str]],
    labels: Mapping[str, str],
    *,
    faults: Faults | None = None,
    failing: Callable[[], bool] = lambda: True,
) -> Upstream:
    """The links of `spec`, each with its binds; `credentials` maps a name to (system_id, password)."""
    links = []
    for connector in spec.connectors:
        system_id, password = credentials.get(connector.name, ("", ""))
        binds = [
            connector_from_url(
                connector.url,
                system_id=system_id,
                password=password,
                window=connector.window,
                submit_timeout=connector.submit_timeout,
            )
            for _ in range(connector.binds)
        ]
        links.append(Link(connector, binds, labels))
    return Upstream(links, faults=faults, failing=failing)
