"""The worker loop against the smpp34 test SMSC over real SMPP, on each store engine."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator

import asyncpg
import pytest
from tests.plugins.smsc import eventually, free_port

from tiergate.sender.connectors.smpp import SmppConnector
from tiergate.sender.faults import Faults
from tiergate.sender.retry import RetryPolicy
from tiergate.sender.upstream import Upstream
from tiergate.sender.worker import Worker, WorkerOptions
from tiergate.store import Encoding, MessageState, NewMessage, Store, WorkerIdentity
from tiergate_kits.smsc import TestSmsc

FAST = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.2)


def new(i: int, destination: str = "+4915112345678") -> NewMessage:
    return NewMessage("cust-1", "bulk", destination, "Acme", f"msg {i}", Encoding.GSM7, 1)


@contextlib.asynccontextmanager
async def running_worker(
    store: Store,
    port: int,
    *,
    policy: RetryPolicy = FAST,
    fail_share: float = 0.0,
    rate: float | None = None,
    owner: str = "w1",
    visibility_timeout: float = 10.0,
) -> AsyncIterator[Worker]:
    connector = SmppConnector(
        "127.0.0.1", port, "esme", "pw", window=64, rate=rate, submit_timeout=3.0, reconnect_min_delay=0.2
    )
    await connector.start()
    worker = Worker(
        store,
        Upstream.single(connector, faults=Faults(fail_submits=fail_share), seed=1),
        WorkerIdentity(owner, "bulk", "r1"),
        "bulk",
        WorkerOptions(window=64, visibility_timeout=visibility_timeout, policy=policy),
        seed=1,
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
        await connector.close()


async def states(store: Store, ids: list[str]) -> dict[str, MessageState]:
    out = {}
    for id_ in ids:
        view = await store.get(id_)
        assert view is not None
        out[id_] = view.message.state
    return out


async def all_in(store: Store, ids: list[str], wanted: set[MessageState]) -> bool:
    return all(s in wanted for s in (await states(store, ids)).values())


async def test_messages_are_submitted_and_receipts_mark_them_delivered(store: Store, smsc: TestSmsc) -> None:
    ids = [r.id for r in await store.enqueue([new(i) for i in range(200)])]
    async with running_worker(store, smsc.port):
        await eventually(lambda: all_in(store, ids, {MessageState.DELIVERED}), within=30)
    assert smsc.stats.accepted == 200
    assert smsc.stats.snapshot()["duplicates"] == 0
    view = await store.get(ids[0])
    assert view is not None
    assert view.message.upstream_message_id
    assert {h.state for h in view.history} >= {
        MessageState.QUEUED,
        MessageState.SUBMITTED,
        MessageState.DELIVERED,
    }


async def test_permanent_reject_discards_at_once_with_reason(store: Store) -> None:
    smsc = TestSmsc("127.0.0.1", free_port(), reject_prefixes=("+4930",))
    await smsc.start()
    try:
        good = [r.id for r in await store.enqueue([new(i) for i in range(5)])]
        bad = [r.id for r in await store.enqueue([new(i, "+493012345678") for i in range(3)])]
        async with running_worker(store, smsc.port):
            await eventually(lambda: all_in(store, bad, {MessageState.DISCARDED}))
            await eventually(lambda: all_in(store, good, {MessageState.SUBMITTED}))
    finally:
        await smsc.stop()
    view = await store.get(bad[0])
    assert view is not None
    assert view.message.attempts == 1
    from tiergate.store import DiscardFilter

    page = await store.list_discards(DiscardFilter())
    assert {d.message_id for d in page.items} == set(bad)
    event = page.items[0]
    assert event.reason == "rejected"
    assert event.upstream_error is not None and "ESME_RINVDSTADR" in event.upstream_error
    assert (event.tier, event.revision) == ("bulk", "r1")


async def test_throttling_backs_off_and_everything_still_arrives(store: Store) -> None:
    smsc = TestSmsc("127.0.0.1", free_port(), throttle_rate=100)
    await smsc.start()
    try:
        ids = [r.id for r in await store.enqueue([new(i) for i in range(300)])]
        async with running_worker(store, smsc.port):
            await eventually(lambda: all_in(store, ids, {MessageState.SUBMITTED}), within=60)
    finally:
        await smsc.stop()
    assert smsc.stats.throttled > 0
    assert smsc.stats.accepted == 300
    assert smsc.stats.snapshot()["duplicates"] == 0
    from tiergate.store import DiscardFilter

    assert (await store.list_discards(DiscardFilter())).items == ()


async def test_upstream_down_then_back_delivers_everything(store: Store, smsc: TestSmsc) -> None:
    await smsc.bring_down()
    ids = [r.id for r in await store.enqueue([new(i) for i in range(100)])]
    async with running_worker(store, smsc.port) as worker:
        await asyncio.sleep(1.5)
        assert not worker.upstream.bound
        assert await all_in(store, ids, {MessageState.QUEUED})
        more = [r.id for r in await store.enqueue([new(i) for i in range(100, 150)])]
        await smsc.bring_up()
        await eventually(lambda: all_in(store, ids + more, {MessageState.DELIVERED}), within=40)
    assert smsc.stats.snapshot()["duplicates"] == 0


async def test_transient_failures_retry_then_discard_after_max_attempts(store: Store, smsc: TestSmsc) -> None:
    ids = [r.id for r in await store.enqueue([new(i) for i in range(10)])]
    async with running_worker(store, smsc.port, fail_share=1.0):
        await eventually(lambda: all_in(store, ids, {MessageState.DISCARDED}), within=30)
    view = await store.get(ids[0])
    assert view is not None
    assert view.message.attempts == FAST.max_attempts
    from tiergate.store import DiscardFilter

    page = await store.list_discards(DiscardFilter())
    assert {d.reason for d in page.items} == {"max-attempts"}
    assert all(d.upstream_error and "fault" in d.upstream_error for d in page.items)
    assert smsc.stats.submits == 0


async def test_per_connector_rate_limit_holds(store: Store, smsc: TestSmsc) -> None:
    ids = [r.id for r in await store.enqueue([new(i) for i in range(60)])]
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with running_worker(store, smsc.port, rate=40):
        await eventually(
            lambda: all_in(store, ids, {MessageState.SUBMITTED, MessageState.DELIVERED}), within=30
        )
    assert loop.time() - started >= 1.0


async def test_leases_of_slow_sends_are_extended_so_a_racing_worker_resends_nothing(
    store: Store, smsc: TestSmsc
) -> None:
    # 60 messages at 25/s take 2.4 s, well past the 0.8 s visibility timeout of each lease.
    ids = [r.id for r in await store.enqueue([new(i) for i in range(60)])]
    async with (
        running_worker(store, smsc.port, rate=25, owner="w1", visibility_timeout=0.8),
        running_worker(store, smsc.port, rate=25, owner="w2", visibility_timeout=0.8),
    ):
        await eventually(
            lambda: all_in(store, ids, {MessageState.SUBMITTED, MessageState.DELIVERED}), within=30
        )
    assert smsc.stats.accepted == 60
    assert smsc.stats.snapshot()["duplicates"] == 0
    for id_ in ids:
        view = await store.get(id_)
        assert view is not None and view.message.attempts == 1


@contextlib.asynccontextmanager
async def writes_blocked(store_url: str) -> AsyncIterator[None]:
    """Hold the store's write lock from another connection."""
    if store_url.startswith("sqlite://"):
        conn = sqlite3.connect(store_url.removeprefix("sqlite://"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    pg = await asyncpg.connect(store_url)
    tx = pg.transaction()
    await tx.start()
    await pg.execute("LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE")
    try:
        yield
    finally:
        await tx.rollback()
        await pg.close()


async def test_a_receipt_is_acknowledged_only_once_stored(store: Store, engine_url: str) -> None:
    smsc = TestSmsc("127.0.0.1", free_port(), receipts=True, receipt_delay=1.5)
    await smsc.start()
    try:
        ids = [r.id for r in await store.enqueue([new(i) for i in range(20)])]
        async with running_worker(store, smsc.port):
            await eventually(lambda: all_in(store, ids, {MessageState.SUBMITTED}), within=20)
            async with writes_blocked(engine_url):
                await asyncio.sleep(2.5)
                # The SMSC has sent its receipts, but none may be answered while unstored.
                assert smsc.stats.receipts_sent == 0
                assert smsc.stats.receipts_failed == 0
            await eventually(lambda: smsc.stats.receipts_sent == 20, within=20)
            assert await all_in(store, ids, {MessageState.DELIVERED})
    finally:
        await smsc.stop()


async def test_a_receipt_whose_bind_is_gone_reaches_the_next_bind_of_the_account(store: Store) -> None:
    # A worker submits and stops (a rollout replaced it) before the carrier's receipts come:
    # the SMSC holds them for the account and the next worker's bind gets them.
    smsc = TestSmsc("127.0.0.1", free_port(), receipts=True, receipt_delay=1.0)
    await smsc.start()
    try:
        ids = [r.id for r in await store.enqueue([new(i) for i in range(10)])]
        async with running_worker(store, smsc.port, owner="old"):
            await eventually(lambda: all_in(store, ids, {MessageState.SUBMITTED}), within=20)
        assert smsc.stats.receipts_sent == 0
        await asyncio.sleep(1.5)  # the receipts are due while no bind is up
        async with running_worker(store, smsc.port, owner="new"):
            await eventually(lambda: all_in(store, ids, {MessageState.DELIVERED}), within=20)
        assert smsc.stats.receipts_rerouted == 10
        assert smsc.stats.receipts_failed == 0
    finally:
        await smsc.stop()


async def test_a_slot_is_held_until_the_outcome_is_committed(
    store: Store, smsc: TestSmsc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While outcome commits are held up, no more than the window is sent unrecorded."""
    ids = [r.id for r in await store.enqueue([new(i) for i in range(500)])]
    gate = asyncio.Event()
    complete = store.complete

    async def held(outcomes: object) -> list[bool]:
        await gate.wait()
        return await complete(outcomes)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "complete", held)
    async with running_worker(store, smsc.port):
        await eventually(lambda: smsc.stats.accepted >= 64)
        await asyncio.sleep(1.0)
        sent_unrecorded = smsc.stats.accepted
        gate.set()
        await eventually(lambda: all_in(store, ids, {MessageState.SUBMITTED, MessageState.DELIVERED}))
    assert sent_unrecorded <= 64
    assert smsc.stats.snapshot()["duplicates"] == 0
