"""Replay end to end: discards re-queued by the replay service, delivered by the sender's own
workers over real SMPP to the smpp34 test SMSC, which counts every message key it accepts.

Each test checks the SMSC's view: every selected message arrived, none twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from tests.plugins.replay import (
    ONCALL_TOKEN,
    RunningReplay,
    Spec,
    StartReplay,
    running_workers,
    seed,
    wait_for,
)

from tiergate.clients.replay import ReplayClient
from tiergate.store import MessageState, Store
from tiergate_kits.smsc import TestSmsc

pytestmark = pytest.mark.slow


def client(running: RunningReplay) -> ReplayClient:
    return ReplayClient(running.url, ONCALL_TOKEN)


async def finished(c: ReplayClient, job_id: str, states: tuple[str, ...] = ("done",)) -> Callable[[], object]:
    async def check() -> bool:
        return (await c.get_job(job_id))["state"] in states

    return check


async def until_state(c: ReplayClient, job_id: str, *states: str, within: float = 60) -> dict[str, object]:
    await wait_for(await finished(c, job_id, states or ("done",)), within=within)
    return await c.get_job(job_id)


async def delivered(store: Store, ids: list[str]) -> bool:
    for message_id in ids:
        view = await store.get(message_id)
        assert view is not None
        if view.message.state not in (MessageState.SUBMITTED, MessageState.DELIVERED):
            return False
    return True


def assert_once(smsc: TestSmsc, expected: int) -> None:
    snap = smsc.stats.snapshot()
    assert snap["duplicates"] == 0, snap
    assert snap["unique"] == expected, snap
    assert snap["accepted"] == expected, snap


async def test_replay_at_a_set_rate_stays_within_ten_percent_and_delivers_once(
    replay_store: Store, start_replay: StartReplay, smsc: TestSmsc
) -> None:
    ids = await seed(replay_store, Spec(300))
    rate = 50.0
    claimed: list[tuple[float, int]] = []
    arrived: list[tuple[float, int]] = []
    async with running_workers(replay_store, smsc.port), start_replay(replay_store) as running:
        async with client(running) as c:
            job = await c.create_job({"tier": ["tier-a"]}, rate=rate)
            assert job["effective_rate"] == rate
            deadline = time.monotonic() + 60
            while smsc.stats.accepted < len(ids) and time.monotonic() < deadline:
                view = await c.get_job(job["id"])
                now = time.monotonic()
                claimed.append((now, int(view["replayed"])))
                arrived.append((now, smsc.stats.accepted))
                await asyncio.sleep(0.05)
            final = await until_state(c, job["id"])
        await wait_for(lambda: delivered(replay_store, ids), within=30)
    assert_once(smsc, len(ids))
    assert (final["matched"], final["replayed"], final["skipped"]) == (300, 300, 0)

    def rate_between(samples: list[tuple[float, int]]) -> float:
        low, high = int(len(ids) * 0.1), int(len(ids) * 0.9)
        t_low = next(t for t, n in samples if n >= low)
        t_high = next(t for t, n in samples if n >= high)
        return (high - low) / (t_high - t_low)

    # The replay itself (messages handed back to the queue) holds the set rate...
    replayed = rate_between(claimed)
    assert abs(replayed - rate) / rate <= 0.10, f"replayed at {replayed:.1f}/s for a set {rate}/s"
    # ...and what reaches the SMSC never runs ahead of it (workers may only lag on a busy machine).
    sent = rate_between(arrived)
    assert sent <= rate * 1.10, f"the SMSC received {sent:.1f}/s for a set {rate}/s"


async def test_overlapping_jobs_send_each_message_once(
    replay_store: Store, start_replay: StartReplay, smsc: TestSmsc
) -> None:
    a = await seed(replay_store, Spec(150, customer="a"))
    b = await seed(replay_store, Spec(150, customer="b"))
    async with (
        running_workers(replay_store, smsc.port),
        start_replay(replay_store, max_batch=20) as running,
        client(running) as c,
    ):
        everything, only_b, b_again = await asyncio.gather(
            c.create_job({}, allow_concurrent=True, everything=True),
            c.create_job({"customer": ["b"]}, allow_concurrent=True),
            c.create_job({"customer": ["b"], "tier": ["tier-a"]}, allow_concurrent=True),
        )
        jobs = [await until_state(c, j["id"]) for j in (everything, only_b, b_again)]
        await wait_for(lambda: delivered(replay_store, a + b), within=30)
        later = await until_state(c, (await c.create_job({}, everything=True))["id"])
    assert_once(smsc, 300)
    assert sum(int(j["replayed"]) for j in jobs) == 300  # type: ignore[call-overload]
    assert [j["matched"] for j in jobs] == [300, 150, 150]
    assert sum(int(j["skipped"]) for j in jobs) == 300  # type: ignore[call-overload]
    assert (later["replayed"], later["skipped"]) == (0, 300)


async def test_a_job_cancelled_midway_then_rerun_delivers_each_message_once(
    replay_store: Store, start_replay: StartReplay, smsc: TestSmsc
) -> None:
    ids = await seed(replay_store, Spec(300))
    async with running_workers(replay_store, smsc.port), start_replay(replay_store) as running:
        async with client(running) as c:
            first = await c.create_job({"reason": ["max-attempts"]}, rate=60)

            async def some_replayed() -> bool:
                return int((await c.get_job(first["id"]))["replayed"]) >= 60

            await wait_for(some_replayed, within=30)
            cancelled = await c.cancel(first["id"])
            assert cancelled["state"] == "cancelled"
            await asyncio.sleep(0.5)
            frozen = await c.get_job(first["id"])
            await asyncio.sleep(0.5)
            assert (await c.get_job(first["id"]))["replayed"] == frozen["replayed"]
            assert 0 < int(frozen["replayed"]) < 300  # type: ignore[call-overload]
            second = await until_state(c, (await c.create_job({"reason": ["max-attempts"]}))["id"])
        await wait_for(lambda: delivered(replay_store, ids), within=30)
    assert_once(smsc, 300)
    assert int(frozen["replayed"]) + int(second["replayed"]) == 300  # type: ignore[call-overload]
    assert second["skipped"] == frozen["replayed"]


async def test_pause_stops_between_batches_and_resume_finishes(
    replay_store: Store, start_replay: StartReplay, smsc: TestSmsc
) -> None:
    ids = await seed(replay_store, Spec(200))
    async with running_workers(replay_store, smsc.port), start_replay(replay_store) as running:
        async with client(running) as c:
            job = await c.create_job({}, rate=50, everything=True)

            async def started() -> bool:
                return int((await c.get_job(job["id"]))["replayed"]) >= 20

            await wait_for(started, within=30)
            assert (await c.pause(job["id"]))["state"] == "paused"
            await asyncio.sleep(0.3)
            held = (await c.get_job(job["id"]))["replayed"]
            await asyncio.sleep(0.6)
            assert (await c.get_job(job["id"]))["replayed"] == held
            assert (await c.resume(job["id"]))["state"] in ("pending", "running")
            done = await until_state(c, job["id"])
        await wait_for(lambda: delivered(replay_store, ids), within=30)
    assert_once(smsc, 200)
    assert (done["replayed"], done["skipped"]) == (200, 0)


async def test_replay_service_killed_mid_job_resumes_and_delivers_once(
    sqlite_url: str,
    smsc: TestSmsc,
    spawn: Callable[..., object],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: object,
) -> None:
    import sys

    import tests.plugins.smsc as smsc_plugin
    from tests.plugins.smsc import free_port

    from tiergate.store import open_store

    # The replay verbs through `python -m tiergate.replay`, mounted or not in `tiergate`.
    monkeypatch.setattr(smsc_plugin, "TIERGATE", [sys.executable, "-m", "tiergate.replay"])
    store = await open_store(sqlite_url)
    try:
        ids = await seed(store, Spec(400))
        port = free_port()
        env = {"TIERGATE_REPLAY_TOKENS": f"{ONCALL_TOKEN}=alice", "TIERGATE_STORE_URL": sqlite_url}
        args = ("replay", "serve", "--host", "127.0.0.1", "--port", str(port))
        url = f"http://127.0.0.1:{port}"

        async def ready() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        async with running_workers(store, smsc.port):
            first = spawn(*args, env=env, name="replay")
            await wait_for(ready, within=30)
            async with ReplayClient(url, ONCALL_TOKEN) as c:
                job = await c.create_job({}, rate=100, everything=True)

                async def halfway() -> bool:
                    return int((await c.get_job(job["id"]))["replayed"]) >= 120

                await wait_for(halfway, within=30)
            first.kill9()  # type: ignore[attr-defined]
            at_kill = await store.get_replay_job(job["id"])
            assert at_kill is not None and at_kill.state.value == "running"
            assert at_kill.replayed < 400
            second = spawn(*args, env=env, name="replay")
            await wait_for(ready, within=30)
            async with ReplayClient(url, ONCALL_TOKEN) as c:
                final = await until_state(c, job["id"])
            await wait_for(lambda: delivered(store, ids), within=30)
            second.terminate()  # type: ignore[attr-defined]
        assert_once(smsc, 400)
        assert (final["matched"], final["replayed"], final["skipped"]) == (400, 400, 0)
    finally:
        await store.close()
