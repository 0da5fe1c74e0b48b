"""Pure parts of the store: ids, filter serialization, claim decisions, URLs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tiergate.store import (
    DiscardFilter,
    InvalidRequest,
    MessageState,
    SkipReason,
    new_id,
    open_store,
)
from tiergate.store._common import GroupCommitter
from tiergate.store._lifecycle import decide_claim, decode_cursor, encode_cursor


def test_ids_are_unique_and_sort_by_time() -> None:
    ids = [new_id(1_700_000_000 + i / 1000) for i in range(2000)]
    assert len(set(ids)) == 2000
    assert ids == sorted(ids)
    assert all(len(i) == 26 for i in ids)


def test_discard_filter_round_trips_through_json() -> None:
    f = DiscardFilter(
        since=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        customer_ids=("c1", "c2"),
        tiers=("t",),
        replayed=False,
    )
    assert DiscardFilter.from_json(f.to_json()) == f
    assert DiscardFilter.from_json(DiscardFilter().to_json()) == DiscardFilter()


@pytest.mark.parametrize(
    ("row", "claimed", "reason"),
    [
        (None, False, SkipReason.NOT_FOUND),
        (("m", None, None), False, SkipReason.NOT_FOUND),
        (("m", None, MessageState.DISCARDED.value), True, None),
        (("m", "job", MessageState.QUEUED.value), False, SkipReason.CLAIMED_BY_THIS_JOB),
        (("m", "other", MessageState.DISCARDED.value), False, SkipReason.ALREADY_REPLAYED),
        (("m", None, MessageState.DELIVERED.value), False, SkipReason.ALREADY_DELIVERED),
        (("m", None, MessageState.SUBMITTED.value), False, SkipReason.ALREADY_DELIVERED),
        (("m", None, MessageState.QUEUED.value), False, SkipReason.ALREADY_REPLAYED),
        (("m", None, MessageState.IN_FLIGHT.value), False, SkipReason.ALREADY_REPLAYED),
    ],
)
def test_claim_decisions(row: object, claimed: bool, reason: SkipReason | None) -> None:
    outcome = decide_claim("d", row, "job")
    assert (outcome.claimed, outcome.skip_reason) == (claimed, reason)


def test_cursor_round_trips_and_rejects_garbage() -> None:
    assert decode_cursor(encode_cursor("01ABC")) == "01ABC"
    with pytest.raises(InvalidRequest):
        decode_cursor("\u00e9\u00e9\u00e9")


@pytest.mark.parametrize(
    "url",
    ["sqlite:///:memory:", "sqlite://relative.db", "sqlite:////double.db", "mysql://x/y"],
)
async def test_open_store_refuses_bad_urls(url: str) -> None:
    with pytest.raises(InvalidRequest):
        await open_store(url)


@pytest.mark.parametrize(("concurrency", "overlapped"), [(1, 1), (2, 2)])
async def test_group_commit_runs_up_to_its_concurrency_of_rounds_at_once(
    concurrency: int, overlapped: int
) -> None:
    release = asyncio.Event()
    running = 0
    most = 0

    async def run_group(ops: list[int]) -> list[int]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return [op * 10 for op in ops]

    group = GroupCommitter(run_group, concurrency=concurrency)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0.01)
    assert most == overlapped
    release.set()
    assert (await first, await second) == (10, 20)
    await group.close()
    assert group.rounds == 2
