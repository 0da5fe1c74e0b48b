"""The operator's probes: a standby is alive and ready, a leader whose Kopf task ended is not."""

from __future__ import annotations

import asyncio

import httpx

from tiergate.controller.health import OperatorHealth, Role, health_app


async def probe(health: OperatorHealth, path: str) -> httpx.Response:
    """One request to the health app, in process."""
    transport = httpx.ASGITransport(app=health_app(health))
    async with httpx.AsyncClient(transport=transport, base_url="http://operator") as client:
        return await client.get(path)


async def test_a_standby_waiting_for_the_lease_is_alive_and_ready() -> None:
    health = OperatorHealth()
    for path in ("/healthz", "/readyz"):
        answer = await probe(health, path)
        assert answer.status_code == 200
        assert answer.json()["role"] == "standby"


async def test_the_leader_is_healthy_while_its_operator_task_runs() -> None:
    forever = asyncio.create_task(asyncio.Event().wait())
    health = OperatorHealth(role=Role.LEADER, operator=forever)
    assert (await probe(health, "/healthz")).status_code == 200
    forever.cancel()
    await asyncio.sleep(0)
    answer = await probe(health, "/healthz")
    assert answer.status_code == 503
    assert answer.json()["reason"] == "the operator task has ended"
    assert (await probe(health, "/readyz")).status_code == 503


async def test_a_stopping_replica_fails_both_probes() -> None:
    health = OperatorHealth(role=Role.STOPPED)
    assert (await probe(health, "/healthz")).status_code == 503
    assert (await probe(health, "/readyz")).status_code == 503


async def test_metrics_are_served_beside_the_probes() -> None:
    answer = await probe(OperatorHealth(), "/metrics")
    assert answer.status_code == 200
    assert "tiergate_operator_leader" in answer.text
