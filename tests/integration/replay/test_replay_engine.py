"""The replay engine on a real store (SQLite and PostgreSQL), without an upstream: scheduling,
max-age, dry runs, resumption, and the hand-off from a halted SenderTier."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.plugins.replay import Clock, Spec, seed, wait_for

from tiergate.clients.replay import halt_filter
from tiergate.replay.engine import EngineOptions, ReplayEngine
from tiergate.replay.filters import parse_filter
from tiergate.replay.gauges import job_outcomes, oldest_discard_at
from tiergate.replay.progress import Progress
from tiergate.store import DiscardFilter, MessageState, NewReplayJob, ReplayState, Store

FAST = EngineOptions(poll_interval=0.05, retry_delay=0.05)


async def state_of(store: Store, job_id: str) -> ReplayState:
    job = await store.get_replay_job(job_id)
    assert job is not None
    return job.state


async def test_one_running_job_per_traffic_class_unless_allowed(
    replay_store: Store, replay_clock: Clock
) -> None:
    await seed(replay_store, Spec(60, traffic_class="bulk"))
    await seed(replay_store, Spec(10, traffic_class="otp"))
    engine = ReplayEngine(replay_store, FAST)
    bulk = DiscardFilter(traffic_classes=("bulk",))
    first = await engine.create(NewReplayJob(filter=bulk, rate=40))
    replay_clock.advance(0.01)  # job ids order by creation time, to the millisecond
    second = await engine.create(NewReplayJob(filter=bulk))
    everything = await engine.create(NewReplayJob(filter=DiscardFilter()))
    other = await engine.create(NewReplayJob(filter=DiscardFilter(traffic_classes=("otp",))))
    shared = await engine.create(NewReplayJob(filter=bulk), allow_concurrent=True)
    dry = await engine.create(NewReplayJob(filter=bulk, dry_run=True))
    await engine.start()
    try:
        await wait_for(lambda: state_of(replay_store, first.id), within=5)
        await asyncio.sleep(0.3)
        assert await state_of(replay_store, first.id) == ReplayState.RUNNING
        assert await state_of(replay_store, second.id) == ReplayState.PENDING
        assert await state_of(replay_store, everything.id) == ReplayState.PENDING
        assert await state_of(replay_store, other.id) in (ReplayState.RUNNING, ReplayState.DONE)
        assert await state_of(replay_store, shared.id) in (ReplayState.RUNNING, ReplayState.DONE)
        assert await state_of(replay_store, dry.id) == ReplayState.DONE
        for job in (first, second, everything):

            async def done(job_id: str = job.id) -> bool:
                return await state_of(replay_store, job_id) == ReplayState.DONE

            await wait_for(done, within=20)
    finally:
        await engine.close()
    jobs = {j.id: j for j in await replay_store.list_replay_jobs()}
    assert sum(jobs[j.id].replayed for j in (first, second, everything, other, shared)) == 70
    assert jobs[dry.id].replayed == 0 and jobs[dry.id].matched == 60


async def test_max_age_skips_old_messages_and_says_why(replay_store: Store, replay_clock: Clock) -> None:
    old = await seed(replay_store, Spec(5, reason="max-age"))
    replay_clock.advance(3600)
    fresh = await seed(replay_store, Spec(7, reason="max-age"))
    engine = ReplayEngine(replay_store, FAST, clock=replay_clock)
    await engine.start()
    try:
        dry = await engine.create(NewReplayJob(filter=DiscardFilter(), dry_run=True, max_age_seconds=600))

        async def counted() -> bool:
            return await state_of(replay_store, dry.id) == ReplayState.DONE

        await wait_for(counted, within=10)
        job = await engine.create(NewReplayJob(filter=DiscardFilter(), max_age_seconds=600))

        async def done() -> bool:
            return await state_of(replay_store, job.id) == ReplayState.DONE

        await wait_for(done, within=10)
    finally:
        await engine.close()
    stored = await replay_store.get_replay_job(job.id)
    dry_stored = await replay_store.get_replay_job(dry.id)
    assert stored is not None and dry_stored is not None
    assert job_outcomes(stored) == {"matched": 12, "replayed": 7, "skipped": 5, "too_old": 5, "failed": 0}
    assert Progress.decode(dry_stored.cursor).would_replay == 7
    assert job_outcomes(dry_stored)["too_old"] == 5 and dry_stored.replayed == 0
    for message_id in old:
        view = await replay_store.get(message_id)
        assert view is not None and view.message.state == MessageState.DISCARDED
    for message_id in fresh:
        view = await replay_store.get(message_id)
        assert view is not None and view.message.state == MessageState.QUEUED


async def test_a_job_left_running_by_a_dead_process_is_resumed_from_its_cursor(replay_store: Store) -> None:
    await seed(replay_store, Spec(50))
    crashed = ReplayEngine(replay_store, EngineOptions(max_batch=10, poll_interval=0.05))
    job = await crashed.create(NewReplayJob(filter=DiscardFilter(), rate=20))
    await crashed.start()

    async def some() -> bool:
        stored = await replay_store.get_replay_job(job.id)
        return stored is not None and stored.replayed >= 10

    await wait_for(some, within=10)
    await crashed.close()
    midway = await replay_store.get_replay_job(job.id)
    assert midway is not None and midway.state == ReplayState.RUNNING and midway.replayed < 50
    assert Progress.decode(midway.cursor).page is not None
    again = ReplayEngine(replay_store, FAST)
    await again.start()
    try:

        async def done() -> bool:
            return await state_of(replay_store, job.id) == ReplayState.DONE

        await wait_for(done, within=20)
    finally:
        await again.close()
    final = await replay_store.get_replay_job(job.id)
    assert final is not None
    assert (final.matched, final.replayed, final.skipped) == (50, 50, 0)


async def test_replay_from_a_halt_picks_only_the_halted_revisions_window(
    replay_store: Store, replay_clock: Clock
) -> None:
    t0 = replay_clock.now
    replay_clock.now = t0 - 100
    before = await seed(replay_store, Spec(3, tier="blue", revision="bad"))
    replay_clock.now = t0 + 10
    target = await seed(replay_store, Spec(5, tier="blue", revision="bad"))
    good_rev = await seed(replay_store, Spec(4, tier="blue", revision="good"))
    other_tier = await seed(replay_store, Spec(2, tier="green", revision="bad"))
    replay_clock.now = t0 + 50
    target += await seed(replay_store, Spec(2, tier="blue", revision="bad", reason="rejected"))
    replay_clock.now = t0 + 100
    after = await seed(replay_store, Spec(3, tier="blue", revision="bad"))
    sender_tier = {
        "metadata": {"name": "blue", "namespace": "sms"},
        "status": {
            "phase": "RolledBack",
            "halt": {
                "check": "error-rate",
                "query": "sum(rate(...))",
                "value": 0.31,
                "threshold": "max 0.02",
                "revision": "bad",
                "message": "error-rate 0.31 above 0.02",
                "windowStart": datetime.fromtimestamp(t0, UTC).isoformat().replace("+00:00", "Z"),
                "windowEnd": datetime.fromtimestamp(t0 + 60, UTC).isoformat().replace("+00:00", "Z"),
                "at": datetime.fromtimestamp(t0 + 55, UTC).isoformat().replace("+00:00", "Z"),
            },
        },
    }
    wire = halt_filter(sender_tier["metadata"]["name"], sender_tier["status"]["halt"])  # type: ignore[index]
    f = parse_filter(wire)
    engine = ReplayEngine(replay_store, FAST)
    await engine.start()
    try:
        job = await engine.create(NewReplayJob(filter=f, source="halt:sms/blue@bad"))

        async def done() -> bool:
            return await state_of(replay_store, job.id) == ReplayState.DONE

        await wait_for(done, within=10)
    finally:
        await engine.close()
    states = {}
    for message_id in before + target + good_rev + other_tier + after:
        view = await replay_store.get(message_id)
        assert view is not None
        states[message_id] = view.message.state
    assert {m for m, s in states.items() if s == MessageState.QUEUED} == set(target)
    stored = await replay_store.get_replay_job(job.id)
    assert stored is not None and (stored.matched, stored.replayed) == (7, 7)


async def test_oldest_unreplayed_discard_is_found_to_the_second(
    replay_store: Store, replay_clock: Clock
) -> None:
    now = datetime.fromtimestamp(replay_clock.now, UTC)
    assert await oldest_discard_at(replay_store, DiscardFilter(replayed=False), now) is None
    replay_clock.now -= 7200
    await seed(replay_store, Spec(2))
    replay_clock.now += 3600
    await seed(replay_store, Spec(2))
    oldest = await oldest_discard_at(replay_store, DiscardFilter(replayed=False), now)
    assert oldest is not None
    assert abs((now - oldest) - timedelta(seconds=7200)) <= timedelta(seconds=1.5)
