"""Helpers for tests and benchmarks of upstream connectors: backlogs, offered load, worker processes.

The test SMSC processes are `tests.plugins.smsc.SmscProc`; these put messages in the store
(all at once, or at a steady rate with `Feeder`), write a connectors file, start a worker
process on it, and wait for what the SMSCs and the store show.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.plugins.smsc import Proc, SmscProc, free_port, wait_http
from tiergate.store import Encoding, NewMessage, open_store


def message(i: int, destination: str = "+4915100000000") -> NewMessage:
    """Message `i` to a number under the prefix of `destination`."""
    number = destination[:-6] + f"{i % 1_000_000:06d}"
    return NewMessage("cust-1", "bulk", number, "Acme", f"load {i}", Encoding.GSM7, 1)


async def enqueue(store_url: str, messages: list[NewMessage]) -> list[str]:
    """Write `messages` to the store; their ids."""
    store = await open_store(store_url)
    try:
        ids: list[str] = []
        for first in range(0, len(messages), 1000):
            ids += [r.id for r in await store.enqueue(messages[first : first + 1000])]
        return ids
    finally:
        await store.close()


async def states(store_url: str, ids: list[str]) -> dict[str, int]:
    """How many of `ids` are in each state."""
    store = await open_store(store_url)
    try:
        counts: dict[str, int] = {}
        for id_ in ids:
            view = await store.get(id_)
            assert view is not None
            counts[view.message.state.value] = counts.get(view.message.state.value, 0) + 1
        return counts
    finally:
        await store.close()


def connectors_file(tmp_path: Path, *connectors: dict[str, Any]) -> Path:
    """A connectors file of these connectors under `tmp_path`."""
    path = tmp_path / "connectors.yaml"
    path.write_text(json.dumps({"connectors": list(connectors)}))
    return path


def start_worker(
    spawn: Callable[..., Proc], tmp_path: Path, store_url: str, config: Path | None, **env: str
) -> tuple[Proc, int]:
    """A worker process on `config` (a connectors file), or on the TIERGATE_UPSTREAM_URL in `env`."""
    port = free_port()
    if config is not None:
        env["TIERGATE_CONNECTORS_FILE"] = str(config)
    proc = spawn(
        "sender",
        "worker",
        env={
            "TIERGATE_TIER": "bulk",
            "TIERGATE_REVISION": "r1",
            "TIERGATE_STORE_URL": store_url,
            "TIERGATE_HTTP_HOST": "127.0.0.1",
            "TIERGATE_HTTP_PORT": str(port),
            "TIERGATE_SMPP_SYSTEM_ID": "esme",
            "TIERGATE_SMPP_PASSWORD": "pw",
            **env,
        },
        name="worker",
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", status=200)
    return proc, port


async def first_accept(smsc: SmscProc, within: float = 30.0) -> float:
    """The wall-clock time by which `smsc` has accepted its first submit."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if smsc.stats()["accepted"] > 0:
            return time.time()
        await asyncio.sleep(0.1)
    raise AssertionError(f"SMSC {smsc.name} accepted nothing in {within}s")


async def until_drained(store_url: str, ids: list[str], within: float = 120.0) -> dict[str, int]:
    """Wait until none of `ids` is queued or in flight (or `within` passed); their states."""
    deadline = time.monotonic() + within
    while True:
        counts = await states(store_url, ids)
        pending = counts.get("queued", 0) + counts.get("in_flight", 0)
        if pending == 0 or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(1.0)


class Feeder:
    """Enqueues messages at a steady rate (an offered load below the connectors' caps)."""

    def __init__(self, store_url: str, rate: float) -> None:
        self.store_url = store_url
        self.rate = rate
        self.ids: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        store = await open_store(self.store_url)
        try:
            started, sent = time.monotonic(), 0
            while not self._stop.is_set():
                due = int((time.monotonic() - started) * self.rate) - sent
                if due > 0:
                    batch = [message(sent + k) for k in range(due)]
                    self.ids += [r.id for r in await store.enqueue(batch)]
                    sent += due
                await asyncio.sleep(0.05)
        finally:
            await store.close()

    def __enter__(self) -> Feeder:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    async def stopped(self) -> list[str]:
        """Stop feeding; every id enqueued."""
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.ids
