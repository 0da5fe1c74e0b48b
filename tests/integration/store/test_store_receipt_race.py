"""A submit's outcome and its delivery receipt written at the same moment from two stores.

Whichever commits first, the message must end delivered and no receipt may stay parked:
under READ COMMITTED each transaction alone would miss the other's uncommitted row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from store_helpers import msg

from tiergate.store import MessageState, ReceiptUpdate, Store, Submitted, WorkerIdentity

W = WorkerIdentity("w-race", "tier-0", "rev-a")


async def test_outcome_and_receipt_racing_always_end_delivered(
    open_more: Callable[..., Awaitable[Store]],
) -> None:
    outcomes_store = await open_more()
    receipts_store = await open_more()
    total = 0
    for round_ in range(5):
        results = await outcomes_store.enqueue([msg(traffic_class="race") for _ in range(60)])
        leased = await outcomes_store.lease("race", W, 60, 300)
        assert len(leased) == 60
        ids = [r.id for r in results]

        async def submit(mid: str, up: str) -> None:
            assert await outcomes_store.complete([Submitted(mid, W.owner, up)]) == [True]

        async def receipt(up: str) -> None:
            await receipts_store.record_receipts([ReceiptUpdate(up, True, "DELIVRD")])

        pairs = []
        for i, mid in enumerate(ids):
            up = f"race-{round_}-{i}"
            pairs.extend([submit(mid, up), receipt(up)] if i % 2 else [receipt(up), submit(mid, up)])
        await asyncio.gather(*pairs)
        states = [(await outcomes_store.get(mid)).message.state for mid in ids]  # type: ignore[union-attr]
        assert states == [MessageState.DELIVERED] * len(ids)
        total += len(ids)
    assert total == 300
