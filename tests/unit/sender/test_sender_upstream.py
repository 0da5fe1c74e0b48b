"""A connector link's reactions to its binds' answers: rate cuts, pauses, the breaker, routing."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from tiergate.sender.connectors.base import Connector, Outbound
from tiergate.sender.connectors.config import ConnectorSpec
from tiergate.sender.errors import PermanentError, ThrottledError, TransientError, UnavailableError
from tiergate.sender.routing import Circuit
from tiergate.sender.upstream import Link, Upstream

MESSAGE = Outbound("m1", "Acme", "+4915112345678", "hi")


class Scripted(Connector):
    """A bind that answers each submit with the next scripted answer (an id or an error)."""

    kind = "scripted"

    def __init__(self, answers: list[str | Exception], bound: bool = True) -> None:
        super().__init__(window=8)
        self.answers = answers
        self.is_bound = bound

    def describe(self) -> str:
        return "smpp://scripted:1"

    @property
    def bound(self) -> bool:
        return self.is_bound

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def _submit(self, message: Outbound) -> str:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def link(name: str, answers: list[str | Exception], clock: Callable[[], float], **spec: object) -> Link:
    return Link(ConnectorSpec(name=name, url="smpp://h:1", **spec), [Scripted(answers)], clock=clock)  # type: ignore[arg-type]


def throttled(retry_after: float | None = None) -> ThrottledError:
    return ThrottledError("slow down", code="ESME_RTHROTTLED", retry_after=retry_after)


async def test_a_throttle_cuts_the_rate_logs_once_and_recovery_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    a = link("a", [throttled(), throttled(), "ok-1", "ok-2"], clock, tps=100)
    caplog.set_level(logging.INFO, logger="tiergate.sender.upstream")
    with pytest.raises(ThrottledError):
        await a.submit(MESSAGE)
    assert a.rate() == pytest.approx(70.0)
    clock.now += 0.1
    with pytest.raises(ThrottledError):
        await a.submit(MESSAGE)
    assert a.rate() == pytest.approx(75.0), "one cut per congestion event, then the climb"
    clock.now += 0.1
    assert await a.submit(MESSAGE) == "ok-1"
    clock.now += 1.0
    assert await a.submit(MESSAGE) == "ok-2"
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if "rate lowered" in line] == [
        "Connector throttled, rate lowered connector=a rate=70 tps=100 code=ESME_RTHROTTLED"
    ]
    assert "Connector rate recovered connector=a rate=100 throttles=2" in lines


async def test_retry_after_pauses_only_that_connector() -> None:
    clock = Clock()
    a = link("a", [throttled(retry_after=3.0)], clock, tps=100)
    b = link("b", ["ok"], clock, tps=100)
    upstream = Upstream([a, b], clock=clock)
    with pytest.raises(ThrottledError):
        await a.submit(MESSAGE)
    assert not a.available(clock.now)
    assert upstream.route(MESSAGE.destination) is b
    clock.now += 3.0
    assert a.available(clock.now)


async def test_a_connector_without_tps_is_capped_at_its_recent_rate_once_throttled() -> None:
    clock = Clock()
    a = link("a", ["x"] * 40 + [throttled()], clock)
    assert a.rate() == 0.0
    for k in range(40):
        clock.now = 1000.0 + k / 20
        await a.submit(MESSAGE)
    clock.now = 1002.0
    with pytest.raises(ThrottledError):
        await a.submit(MESSAGE)
    assert a.aimd is not None and a.aimd.tps == 20.0
    assert a.rate() == pytest.approx(14.0)


async def test_errors_open_the_circuit_and_traffic_moves() -> None:
    clock = Clock()
    a = link("a", [TransientError("boom", code="ESME_RSYSERR")] * 5 + ["back"], clock)
    b = link("b", [], clock)
    upstream = Upstream([a, b], clock=clock)
    for _ in range(5):
        with pytest.raises(TransientError):
            await a.submit(MESSAGE)
    assert a.breaker.state(clock.now) is Circuit.OPEN
    assert [upstream.route(MESSAGE.destination) for _ in range(20)] == [b] * 20
    with pytest.raises(UnavailableError):
        await a.submit(MESSAGE)
    clock.now += a.breaker.open_for
    assert await a.submit(MESSAGE) == "back"
    assert a.breaker.state(clock.now) is Circuit.CLOSED


async def test_a_rejection_is_the_messages_fault_not_the_connectors() -> None:
    clock = Clock()
    a = link("a", [PermanentError("bad number", code="ESME_RINVDSTADR")] * 10, clock)
    for _ in range(10):
        with pytest.raises(PermanentError):
            await a.submit(MESSAGE)
    assert a.breaker.state(clock.now) is Circuit.CLOSED


async def test_a_link_with_no_bound_bind_is_not_routed_to_and_refuses() -> None:
    clock = Clock()
    bind = Scripted([], bound=False)
    a = Link(ConnectorSpec(name="a", url="smpp://h:1", prefixes=("+49",)), [bind], clock=clock)
    upstream = Upstream([a], clock=clock)
    assert upstream.route(MESSAGE.destination) is None
    assert not upstream.can_send()
    assert upstream.unserved() == ["+49"]
    with pytest.raises(UnavailableError):
        await a.submit(MESSAGE)
    bind.is_bound = True
    assert upstream.route(MESSAGE.destination) is a
    assert upstream.unserved() == []
