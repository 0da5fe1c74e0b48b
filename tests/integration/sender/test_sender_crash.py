"""Kill -9 the API and the workers under load, restart them: no accepted message vanishes.

Every message that got a 202 must end submitted, delivered or discarded with a reason.
Duplicates seen by the SMSC (a lease expiring mid-submit can resend) are counted and
reported; they must stay rare.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.plugins.smsc import Proc, bulk_worker_env, free_port, wait_http

from tiergate.store import MessageState, open_store

TOTAL = 6000
BATCH = 25
PACE = 0.04
FINAL = {MessageState.SUBMITTED, MessageState.DELIVERED, MessageState.DISCARDED}


@pytest.mark.slow
async def test_kill_9_under_load_loses_nothing(
    spawn: Callable[..., Proc],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
    engine_url: str,
) -> None:
    store_url = engine_url
    smpp_port, stats_port, api_port = free_port(), free_port(), free_port()
    worker_ports = [free_port(), free_port()]
    spawn("smsc", "--port", str(smpp_port), "--stats-port", str(stats_port), "--receipts", name="smsc")
    wait_http(f"http://127.0.0.1:{stats_port}/healthz")
    common = {
        "TIERGATE_STORE_URL": store_url,
        "TIERGATE_HTTP_HOST": "127.0.0.1",
        "TIERGATE_LOG_LEVEL": "WARNING",
    }
    api_env = {
        **common,
        "TIERGATE_HTTP_PORT": str(api_port),
        "TIERGATE_API_TOKENS": "tok=cust",
        "TIERGATE_TRAFFIC_CLASSES": "bulk",
    }

    def start_api() -> Proc:
        return spawn("sender", "api", env=api_env, name="api")

    def start_worker(i: int) -> Proc:
        return spawn(
            "sender",
            "worker",
            name=f"worker{i}",
            env=bulk_worker_env(common, worker_ports[i], smpp_port),
        )

    api = start_api()
    wait_http(f"http://127.0.0.1:{api_port}/healthz")
    workers = [start_worker(0), start_worker(1)]

    accepted: dict[str, str] = {}
    refused = 0
    kills_during_load = False

    async def load(client: httpx.AsyncClient, start: int, stop: int) -> None:
        nonlocal refused
        for first in range(start, stop, BATCH):
            messages = [
                {
                    "destination": "+4915112345678",
                    "sender_id": "Acme",
                    "body": f"crash {i}",
                    "idempotency_key": f"k{i}",
                }
                for i in range(first, min(stop, first + BATCH))
            ]
            while True:
                try:
                    response = await client.post("/v1/messages:batch", json={"messages": messages})
                except httpx.HTTPError:
                    refused += 1
                    await asyncio.sleep(0.05)
                    continue
                assert response.status_code < 500 or response.status_code == 503, response.text
                if response.status_code == 202:
                    for m, r in zip(messages, response.json()["messages"], strict=True):
                        accepted[m["idempotency_key"]] = r["id"]
                    await asyncio.sleep(PACE)
                    break
                await asyncio.sleep(0.05)

    async def chaos() -> None:
        nonlocal api, workers, kills_during_load
        await asyncio.sleep(1.0)
        kills_during_load = len(accepted) < TOTAL
        api.kill9()
        for w in workers:
            w.kill9()
        await asyncio.sleep(0.3)
        api = start_api()
        await asyncio.sleep(1.0)
        workers = [start_worker(0), start_worker(1)]
        await asyncio.sleep(2.0)
        workers[0].kill9()
        workers[0] = start_worker(0)

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{api_port}", headers={"authorization": "Bearer tok"}, timeout=30
    ) as client:
        step = TOTAL // 4
        await asyncio.gather(chaos(), *[load(client, k, k + step) for k in range(0, TOTAL, step)])
    assert len(accepted) == TOTAL
    assert kills_during_load, "the load finished before the kills: make it slower"

    store = await open_store(store_url)
    try:
        deadline = time.monotonic() + 120
        while True:
            missing, pending = [], 0
            for id_ in accepted.values():
                view = await store.get(id_)
                if view is None:
                    missing.append(id_)
                elif view.message.state not in FINAL:
                    pending += 1
            assert not missing, f"{len(missing)} accepted messages vanished"
            if pending == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        assert pending == 0, f"{pending} accepted messages never reached a final state"
        discarded = 0
        for id_ in accepted.values():
            view = await store.get(id_)
            assert view is not None
            if view.message.state is MessageState.DISCARDED:
                discarded += 1
    finally:
        await store.close()

    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"http://127.0.0.1:{stats_port}/stats?keys=1")).json()
    keys = stats.pop("keys")
    report = {
        "accepted": len(accepted),
        "discarded": discarded,
        "smsc_unique": stats["unique"],
        "smsc_duplicates": stats["duplicates"],
        "client_retries_while_api_down": refused,
    }
    record_property("crash_report", json.dumps(report))
    print("crash report", json.dumps(report))
    sent = {k.split("|", 1)[1] for k in keys}
    assert stats["unique"] == len(accepted) - discarded
    assert sent <= {f"crash {i}" for i in range(TOTAL)}
    assert stats["duplicates"] <= TOTAL * 0.05
    for w in workers:
        assert w.terminate() == 0
