"""The drill's store reads go through `Store`, so a drill runs on PostgreSQL as on SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tiergate.store import Encoding, MessageState, NewMessage, WorkerIdentity, open_store
from tiergate_kits.drill.scenario import StoreView

BAD = WorkerIdentity("w-bad", "tier-0", "rev-bad")
GOOD = WorkerIdentity("w-good", "tier-0", "rev-good")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/drill.db"
    return str(request.getfixturevalue("postgres_dsn"))


def _message(n: int) -> NewMessage:
    return NewMessage(f"c{n}", "bulk", "+447700900123", "ACME", "hello", Encoding.GSM7, 1, None, None)


async def _play(url: str) -> str:
    """Three messages: the bad revision leases two, discards one and loses the other's lease."""
    store = await open_store(url)
    try:
        await store.enqueue([_message(n) for n in range(3)])
        discarded, _ = (m.id for m in await store.lease("bulk", BAD, 2, 0.0))
        assert await store.discard(discarded, BAD.owner, "expired")
        leased = await store.lease("bulk", GOOD, 3, 30)
        for m in leased:
            await store.mark_submitted(m.id, GOOD.owner, f"up-{m.id}")
        await store.record_receipt(f"up-{leased[0].id}", True, "DELIVRD")
        assert len(leased) == 2
    finally:
        await store.close()
    return discarded


def test_the_drill_reads_fates_depths_and_discards_through_the_store(store_url: str) -> None:
    a = asyncio.run(_play(store_url))
    view = StoreView(store_url)
    try:
        fates, discards = view.read_fates(frozenset({"rev-bad"}))
        assert view.unfinished() == 0
        assert view.unfinished((MessageState.SUBMITTED,)) == 1
        assert view.queue_depths() == {}
    finally:
        view.close()
    assert sum(f.handled_by_bad for f in fates.values()) == 2
    assert fates[a].state == MessageState.DISCARDED
    assert sorted(f.state for f in fates.values()) == ["delivered", "discarded", "submitted"]
    assert [(d.message_id, d.revision, d.reason, d.replayed_at) for d in discards] == [
        (a, "rev-bad", "expired", None)
    ]
