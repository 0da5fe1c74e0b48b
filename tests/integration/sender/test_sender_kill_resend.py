"""Kill -9 a worker mid-send, again and again: the SMSC sees at most one window resent per kill.

SMPP has no idempotency at the carrier, so what was sent but not yet recorded when a worker
dies is sent again once its lease expires. A message keeps its window slot until its outcome
is committed, so that is never more than the window (``TIERGATE_WINDOW``) per kill.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest
from tests.plugins.smsc import Proc, free_port, wait_http

from tiergate.domain.records import Encoding, ValidMessage
from tiergate.store import open_store

TOTAL = 6000
WINDOW = 8
KILLS = 3
SENT_BETWEEN_KILLS = 600


@pytest.mark.slow
async def test_a_kill_resends_at_most_the_window(
    spawn: Callable[..., Proc], engine_url: str, record_property: Callable[[str, object], None]
) -> None:
    store = await open_store(engine_url)
    try:
        messages = [
            ValidMessage("cust", "bulk", "+4915112345678", "Acme", f"kill {i}", Encoding.GSM7, 1)
            for i in range(TOTAL)
        ]
        for first in range(0, TOTAL, 1000):
            await store.enqueue(messages[first : first + 1000])
    finally:
        await store.close()
    smpp_port, stats_port, http_port = free_port(), free_port(), free_port()
    spawn("smsc", "--port", str(smpp_port), "--stats-port", str(stats_port), name="smsc")
    wait_http(f"http://127.0.0.1:{stats_port}/healthz")
    env = {
        "TIERGATE_STORE_URL": engine_url,
        "TIERGATE_HTTP_HOST": "127.0.0.1",
        "TIERGATE_HTTP_PORT": str(http_port),
        "TIERGATE_LOG_LEVEL": "WARNING",
        "TIERGATE_TIER": "bulk",
        "TIERGATE_REVISION": "r1",
        "TIERGATE_UPSTREAM_URL": f"smpp://127.0.0.1:{smpp_port}",
        "TIERGATE_VISIBILITY_TIMEOUT": "2",
        "TIERGATE_WINDOW": str(WINDOW),
    }

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stats_port}") as smsc:

        async def submits() -> int:
            return int((await smsc.get("/stats")).json()["submits"])

        kills = 0
        worker = spawn("sender", "worker", env=env, name="worker")
        while kills < KILLS:
            start = await submits()
            deadline = time.monotonic() + 120
            while await submits() < start + SENT_BETWEEN_KILLS:
                assert time.monotonic() < deadline, "the worker stopped sending"
                await asyncio.sleep(0.02)
            worker.kill9()
            kills += 1
            worker = spawn("sender", "worker", env=env, name="worker")
        store = await open_store(engine_url)
        try:
            deadline = time.monotonic() + 180
            while (row := (await store.queue_stats()).get("bulk")) is not None and row.depth:
                assert time.monotonic() < deadline, "the queue never drained"
                await asyncio.sleep(0.5)
        finally:
            await store.close()
        assert worker.terminate() == 0
        stats = (await smsc.get("/stats")).json()
    report = {"kills": kills, "window": WINDOW, "unique": stats["unique"], "duplicates": stats["duplicates"]}
    record_property("kill_resend", json.dumps(report))
    print("kill resend report", json.dumps(report))
    assert stats["unique"] == TOTAL
    assert stats["duplicates"] <= KILLS * WINDOW
