"""The sender's processes as a pod runs them: fault switch, deep readiness, SIGTERM."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.plugins.smsc import Proc, eventually, free_port, wait_http

from tiergate.store import Encoding, MessageState, NewMessage, open_store
from tiergate_kits.smsc import TestSmsc

FAIL_AFTER = 12.0


def worker_env(tmp_path: Path, port: int, upstream: str, **extra: str) -> dict[str, str]:
    return {
        "TIERGATE_TIER": "bulk",
        "TIERGATE_REVISION": "rev-1",
        "TIERGATE_STORE_URL": f"sqlite://{tmp_path / 'q.db'}",
        "TIERGATE_UPSTREAM_URL": upstream,
        "TIERGATE_HTTP_HOST": "127.0.0.1",
        "TIERGATE_HTTP_PORT": str(port),
        "TIERGATE_SMPP_SYSTEM_ID": "esme",
        "TIERGATE_SMPP_PASSWORD": "secret",
        **extra,
    }


def test_fault_switch_is_refused_without_the_allow_flag(spawn: Callable[..., Proc], tmp_path: Path) -> None:
    port = free_port()
    proc = spawn(
        "sender", "worker", env=worker_env(tmp_path, port, "smpp://127.0.0.1:1", TIERGATE_FAULTS="no-bind")
    )
    assert proc.popen.wait(30) == 2
    assert "TIERGATE_ALLOW_FAULTS" in proc.output()


def test_no_bind_fault_serves_healthz_but_readyz_stays_false(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    port = free_port()
    proc = spawn(
        "sender",
        "worker",
        env=worker_env(
            tmp_path, port, "smpp://127.0.0.1:1", TIERGATE_FAULTS="no-bind", TIERGATE_ALLOW_FAULTS="1"
        ),
    )
    health = wait_http(f"http://127.0.0.1:{port}/healthz", status=200)
    assert health.json()["status"] == "alive"
    ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False
    assert any(m.startswith("upstream") for m in body["missing"])
    assert body["faults"] == "no-bind"
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'tiergate_sender_worker_ready{revision="rev-1",tier="bulk"} 0.0' in metrics
    assert proc.terminate() == 0


async def test_worker_is_ready_only_when_bound_and_exits_cleanly_on_sigterm(
    spawn: Callable[..., Proc], tmp_path: Path, smsc: TestSmsc
) -> None:
    port = free_port()
    await smsc.bring_down()
    proc = spawn("sender", "worker", env=worker_env(tmp_path, port, f"smpp://127.0.0.1:{smsc.port}"))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(300):
            try:
                response = await client.get("/readyz")
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        assert response.status_code == 503
        assert "upstream: not bound" in response.json()["missing"]
        await smsc.bring_up()
        for _ in range(200):
            response = await client.get("/readyz")
            if response.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert response.status_code == 200, response.text
        assert response.json()["missing"] == []
    exit_code = await asyncio.to_thread(proc.terminate)
    assert exit_code == 0
    assert "Worker process stopped" in proc.output()


async def _enqueue(store_url: str, first: int, count: int) -> list[str]:
    async with await open_store(store_url) as store:
        results = await store.enqueue(
            [
                NewMessage("cust-1", "bulk", "+4915112345678", "Acme", f"msg {i}", Encoding.GSM7, 1)
                for i in range(first, first + count)
            ]
        )
    return [r.id for r in results]


async def _states(store_url: str, ids: list[str]) -> set[MessageState]:
    async with await open_store(store_url) as store:
        views = [await store.get(i) for i in ids]
    return {v.message.state for v in views if v is not None}


async def test_fail_after_fault_sends_first_then_unbinds_after_the_delay(
    spawn: Callable[..., Proc], tmp_path: Path, smsc: TestSmsc
) -> None:
    port = free_port()
    store_url = f"sqlite://{tmp_path / 'q.db'}"
    early = await _enqueue(store_url, 0, 5)
    started = time.monotonic()
    proc = spawn(
        "sender",
        "worker",
        env=worker_env(
            tmp_path,
            port,
            f"smpp://127.0.0.1:{smsc.port}",
            TIERGATE_FAULTS=f"no-bind,fail-after={FAIL_AFTER:g}",
            TIERGATE_ALLOW_FAULTS="1",
        ),
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as client:

        async def readyz() -> httpx.Response | None:
            try:
                return await client.get("/readyz")
            except httpx.HTTPError:
                return None

        async def ready() -> bool:
            response = await readyz()
            return response is not None and response.status_code == 200

        await eventually(ready, within=FAIL_AFTER)
        await eventually(lambda: smsc.stats.accepted >= len(early), within=FAIL_AFTER)
        assert "Fault in effect" not in proc.output()

        async def unready() -> bool:
            response = await readyz()
            return response is not None and response.status_code == 503

        await eventually(unready, within=60)
        assert time.monotonic() - started >= FAIL_AFTER
        body = (await client.get("/readyz")).json()
        assert "upstream: not bound" in body["missing"]
        assert body["faults"] == f"no-bind,fail-after={FAIL_AFTER:g}"
        assert (await client.get("/healthz")).json()["status"] == "alive"
        await eventually(lambda: "Fault in effect" in proc.output(), within=10)

        accepted = smsc.stats.accepted
        late = await _enqueue(store_url, 5, 3)
        await asyncio.sleep(2.0)
        assert smsc.stats.accepted == accepted
        assert await _states(store_url, late) == {MessageState.QUEUED}
        metrics = (await client.get("/metrics")).text
        assert 'tiergate_sender_worker_ready{revision="rev-1",tier="bulk"} 0.0' in metrics
    assert await asyncio.to_thread(proc.terminate) == 0


async def test_fail_class_fault_spares_workers_of_other_traffic_classes(
    spawn: Callable[..., Proc], tmp_path: Path, smsc: TestSmsc
) -> None:
    upstream = f"smpp://127.0.0.1:{smsc.port}"
    faults = {"TIERGATE_FAULTS": "no-bind,fail-class=priority", "TIERGATE_ALLOW_FAULTS": "1"}
    bulk_port, priority_port = free_port(), free_port()
    bulk = spawn("sender", "worker", env=worker_env(tmp_path, bulk_port, upstream, **faults), name="bulk")
    priority = spawn(
        "sender",
        "worker",
        env=worker_env(
            tmp_path,
            priority_port,
            upstream,
            TIERGATE_TIER="priority",
            TIERGATE_TRAFFIC_CLASS="priority",
            **faults,
        ),
        name="priority",
    )
    clean = await asyncio.to_thread(wait_http, f"http://127.0.0.1:{bulk_port}/readyz", 60.0, 200)
    assert "faults" not in clean.json()
    await asyncio.to_thread(wait_http, f"http://127.0.0.1:{priority_port}/healthz", 60.0, 200)
    faulted = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{priority_port}/readyz")
    assert faulted.status_code == 503
    assert faulted.json()["faults"] == "no-bind,fail-class=priority"
    assert "Sending service not started fault=no-bind tier=priority" in priority.output()
    for proc in (bulk, priority):
        assert await asyncio.to_thread(proc.terminate) == 0
