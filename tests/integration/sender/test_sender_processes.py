"""The sender's processes as a pod runs them: fault switch, deep readiness, SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.plugins.smsc import Proc, free_port, wait_http

from tiergate.sender.smsc import TestSmsc


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
