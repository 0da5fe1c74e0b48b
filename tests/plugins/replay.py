"""Fixtures for the replay tests: seeded discards, an in-process replay service, workers.

Register with ``pytest_plugins = ["tests.plugins.replay"]``. Needs ``tests.plugins.smsc``
(free ports) and ``tests.plugins.postgres`` (the PostgreSQL parameter).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.plugins.smsc import free_port
from tiergate.replay.engine import EngineOptions
from tiergate.replay.service import ReplayService
from tiergate.replay.settings import ReplaySettings, parse_tokens
from tiergate.sender.connectors.smpp import SmppConnector
from tiergate.sender.worker import Worker, WorkerOptions
from tiergate.store import Discard, Encoding, NewMessage, Store, WorkerIdentity, open_store

ONCALL_TOKEN = "oncall-secret"
READER_TOKEN = "reader-secret"
TOKENS = f"{ONCALL_TOKEN}=alice,{READER_TOKEN}=bob:read"


class Clock:
    """A settable clock for stores whose discard times a test wants to choose."""

    def __init__(self) -> None:
        # Whole seconds: the store keeps discard times to the millisecond, so a start with a
        # sub-millisecond fraction would put "exactly at `to`" on either side of the bound.
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Spec:
    """Discards to seed: how many, and of which customer, class, tier, revision and reason."""

    count: int = 1
    customer: str = "acme"
    traffic_class: str = "bulk"
    tier: str = "tier-a"
    revision: str = "rev-1"
    reason: str = "max-attempts"


_serial = iter(range(10**9))


def message(customer: str, traffic_class: str, n: int | None = None) -> NewMessage:
    """A message whose destination and body are unique (the SMSC counts duplicates by them)."""
    n = next(_serial) if n is None else n
    return NewMessage(
        customer_id=customer,
        traffic_class=traffic_class,
        destination=f"+4477009{n % 100000:05d}",
        sender_id="ACME",
        body=f"replay test {n}",
        encoding=Encoding.GSM7,
        segments=1,
        idempotency_key=f"k{n}",
    )


async def seed(store: Store, spec: Spec) -> list[str]:
    """Enqueue, lease and discard `spec.count` messages; returns the message ids."""
    results = await store.enqueue([message(spec.customer, spec.traffic_class) for _ in range(spec.count)])
    ids = {r.id for r in results}
    owner = f"seed-{next(_serial)}"
    identity = WorkerIdentity(owner, spec.tier, spec.revision)
    leased: list[str] = []
    while len(leased) < len(ids):
        batch = await store.lease(spec.traffic_class, identity, 1000, 600.0)
        if not batch:
            break
        leased.extend(m.id for m in batch)
    assert set(leased) == ids, "seeding leased messages it did not create; use a fresh traffic class"
    await store.complete([Discard(i, owner, spec.reason, "seeded") for i in leased])
    return [r.id for r in results]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def replay_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL: SQLite, and PostgreSQL where marked."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/replay.db"
    return str(request.getfixturevalue("postgres_dsn"))


@pytest.fixture
def replay_clock() -> Clock:
    """The clock of the `replay_store`."""
    return Clock()


@pytest.fixture
async def replay_store(replay_store_url: str, replay_clock: Clock) -> AsyncIterator[Store]:
    """A store on `replay_store_url` with a settable clock."""
    store = await open_store(replay_store_url, clock=replay_clock)
    try:
        yield store
    finally:
        await store.close()


@dataclass
class RunningReplay:
    """An in-process replay service."""

    service: ReplayService
    url: str


StartReplay = Callable[..., "contextlib.AbstractAsyncContextManager[RunningReplay]"]


@pytest.fixture
def start_replay() -> StartReplay:
    """`async with start_replay(store, max_rate=...) as running:` serves the replay API."""

    @contextlib.asynccontextmanager
    async def start(
        store: Store, *, max_rate: float | None = None, max_batch: int = 500, metrics_interval: float = 0.2
    ) -> AsyncIterator[RunningReplay]:
        port = free_port()
        settings = ReplaySettings(
            store_url="unused",
            tokens=parse_tokens(TOKENS),
            host="127.0.0.1",
            port=port,
            max_rate=max_rate,
            max_batch=max_batch,
            metrics_interval=metrics_interval,
        )
        service = ReplayService(
            store,
            settings,
            EngineOptions(max_rate=max_rate, max_batch=max_batch, poll_interval=0.1, retry_delay=0.1),
        )
        await service.start()
        try:
            yield RunningReplay(service, f"http://127.0.0.1:{port}")
        finally:
            await service.stop()

    return start


async def wait_for(check: Callable[[], object], within: float = 30.0, interval: float = 0.05) -> None:
    """Await until `check()` (sync or async) is truthy, else fail."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {within}s")
        await asyncio.sleep(interval)


def unique(ids: Sequence[str]) -> set[str]:
    """The ids as a set, asserting none repeats."""
    assert len(set(ids)) == len(ids)
    return set(ids)


@contextlib.asynccontextmanager
async def running_workers(
    store: Store,
    smpp_port: int,
    traffic_classes: Sequence[str] = ("bulk",),
    *,
    tier: str = "tier-a",
    revision: str = "rev-good",
    window: int = 64,
) -> AsyncIterator[list[Worker]]:
    """The sender's own workers, in process, one per traffic class, bound to the SMSC over SMPP."""
    connectors: list[SmppConnector] = []
    workers: list[Worker] = []
    tasks: list[asyncio.Task[None]] = []
    for tc in traffic_classes:
        connector = SmppConnector(
            "127.0.0.1", smpp_port, "esme", "pw", window=window, submit_timeout=5.0, reconnect_min_delay=0.2
        )
        await connector.start()
        connectors.append(connector)
        worker = Worker(
            store,
            connector,
            WorkerIdentity(f"w-{tc}-{next(_serial)}", tier, revision),
            tc,
            WorkerOptions(window=window, visibility_timeout=30.0, poll_interval=0.01, max_poll_interval=0.05),
            seed=1,
        )
        workers.append(worker)
        tasks.append(asyncio.create_task(worker.run()))
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()
        for task in tasks:
            await asyncio.wait_for(task, 30)
        for connector in connectors:
            await connector.close()
