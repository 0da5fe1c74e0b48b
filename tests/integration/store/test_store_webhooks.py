"""The outbox, validity, send time and receipt timeout in the store, on both engines.

Every state change a customer hears about writes its event in the same transaction; claims
hand out one event per message at a time; the sweeps move each message once even when two
stores run them at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from store_helpers import FakeClock, msg

from tiergate.store import (
    Discard,
    DiscardFilter,
    MessageState,
    NewReplayJob,
    ReceiptUpdate,
    RetryLater,
    Store,
    Submitted,
    WebhookResult,
    WorkerIdentity,
)

W = WorkerIdentity("w1", "tier-0", "rev-a")
OpenStore = Callable[..., Awaitable[Store]]
HOOK = "https://hooks.example/acme"


def at(clock: FakeClock, seconds: float = 0) -> datetime:
    return datetime.fromtimestamp(clock.now + seconds, UTC)


async def _lease_one(store: Store) -> str:
    [m] = await store.lease("otp", W, 10, 30)
    return m.id


async def test_every_customer_visible_change_writes_one_event_in_its_transaction(
    store: Store, clock: FakeClock
) -> None:
    [a] = await store.enqueue([msg()._replace(callback_url=HOOK)])
    [silent] = await store.enqueue([msg(body="no hook")])
    assert {m.id for m in await store.lease("otp", W, 10, 30)} == {a.id, silent.id}
    await store.complete([Submitted(a.id, W.owner, "up-a"), Submitted(silent.id, W.owner, "up-s")])
    await store.record_receipts([ReceiptUpdate("up-a", False, "stat=UNDELIV err=001")])
    events = await store.webhook_events(a.id)
    assert [(e.state, e.reason) for e in events] == [("submitted", None), ("failed", "stat=UNDELIV err=001")]
    assert all(e.status == "pending" and e.callback_url == HOOK and e.client_ref == "ref-1" for e in events)
    assert events[0].upstream_message_id == "up-a"
    assert await store.webhook_events(silent.id) == []
    backlog = await store.webhook_backlog()
    assert backlog.pending == 2
    assert backlog.oldest_pending_at is not None


async def test_retries_write_no_event_discards_and_replays_do(store: Store, clock: FakeClock) -> None:
    [a] = await store.enqueue([msg()._replace(callback_url=HOOK)])
    await _lease_one(store)
    await store.complete([RetryLater(a.id, W.owner, at(clock, -1), "timeout")])
    assert await store.webhook_events(a.id) == []
    await _lease_one(store)
    await store.complete([Discard(a.id, W.owner, "max-attempts", "x: y")])
    [discard] = (await store.list_discards(DiscardFilter())).items
    job = await store.create_replay_job(NewReplayJob(DiscardFilter()))
    await store.claim_for_replay([discard.id], job.id)
    events = await store.webhook_events(a.id)
    assert [(e.state, e.reason) for e in events] == [("discarded", "max-attempts"), ("queued", "replay")]


async def test_claims_give_one_event_per_message_in_order_and_lapse(store: Store, clock: FakeClock) -> None:
    [a] = await store.enqueue([msg()._replace(callback_url=HOOK)])
    await _lease_one(store)
    await store.complete([Submitted(a.id, W.owner, "up-a")])
    await store.record_receipts([ReceiptUpdate("up-a", True)])
    [first] = await store.claim_webhook_events(10, lease=30)
    assert first.state == "submitted"
    assert await store.claim_webhook_events(10, lease=30) == []
    clock.advance(31)
    [again] = await store.claim_webhook_events(10, lease=30)
    assert again.seq == first.seq
    await store.record_webhook_results([WebhookResult(first.seq, False, 503, "HTTP 503", at(clock, 5))])
    assert await store.claim_webhook_events(10, lease=30) == []
    clock.advance(6)
    [retried] = await store.claim_webhook_events(10, lease=30)
    assert (retried.seq, retried.attempts, retried.last_status) == (first.seq, 1, 503)
    await store.record_webhook_results([WebhookResult(first.seq, True, 200)])
    [second] = await store.claim_webhook_events(10, lease=30)
    assert second.state == "delivered"
    await store.record_webhook_results([WebhookResult(second.seq, False, None, "refused", None)])
    events = await store.webhook_events(a.id)
    assert [(e.status, e.attempts) for e in events] == [("sent", 2), ("failed", 1)]
    assert events[0].sent_at is not None
    assert (await store.webhook_backlog()).pending == 0


async def test_two_dispatchers_never_claim_the_same_event(open_more: OpenStore, clock: FakeClock) -> None:
    one, two = await open_more(), await open_more()
    results = await one.enqueue([msg(body=f"m{i}")._replace(callback_url=HOOK) for i in range(200)])
    leased = await one.lease("otp", W, 500, 30)
    await one.complete([Submitted(m.id, W.owner, f"up-{m.id}") for m in leased])
    claims = await asyncio.gather(*(s.claim_webhook_events(25, lease=30) for s in (one, two) * 6))
    seqs = [e.seq for claim in claims for e in claim]
    assert len(seqs) == len(set(seqs)) == len(results)


async def test_scheduled_message_is_not_leased_before_its_send_time(store: Store, clock: FakeClock) -> None:
    [later] = await store.enqueue([msg()._replace(send_at=clock.now + 60)])
    assert await store.lease("otp", W, 10, 30) == []
    stats = await store.queue_stats()
    assert stats["otp"].queued == 1
    clock.advance(61)
    [m] = await store.lease("otp", W, 10, 30)
    assert m.id == later.id
    assert m.send_at is not None
    assert abs(m.send_at.timestamp() - (clock.now - 1)) < 0.001


async def test_expired_queued_messages_are_discarded_once(open_more: OpenStore, clock: FakeClock) -> None:
    one, two = await open_more(), await open_more()
    [a, b] = await one.enqueue(
        [
            msg()._replace(expires_at=clock.now + 10, callback_url=HOOK),
            msg(body="lasting")._replace(expires_at=clock.now + 100),
        ]
    )
    assert await one.expire_queued() == 0
    clock.advance(11)
    assert sorted(await asyncio.gather(one.expire_queued(), two.expire_queued())) == [0, 1]
    view = await one.get(a.id)
    assert view is not None
    assert view.message.state is MessageState.DISCARDED
    [discard] = (await one.list_discards(DiscardFilter())).items
    assert (discard.message_id, discard.reason) == (a.id, "expired")
    assert [(e.state, e.reason) for e in await one.webhook_events(a.id)] == [("discarded", "expired")]
    [m] = await one.lease("otp", W, 10, 30)
    assert m.id == b.id


async def test_receipt_timeout_moves_submitted_to_unknown_once_and_a_late_receipt_still_counts(
    open_more: OpenStore, clock: FakeClock
) -> None:
    one, two = await open_more(), await open_more()
    [a, b] = await one.enqueue([msg()._replace(callback_url=HOOK), msg(body="b")])
    for m in await one.lease("otp", W, 10, 30):
        await one.complete([Submitted(m.id, W.owner, f"up-{m.id}")])
    clock.advance(100)
    cutoff = at(clock, -50)
    moved = await asyncio.gather(one.expire_unreceipted(cutoff), two.expire_unreceipted(cutoff))
    assert sum(moved) == 2
    assert await one.expire_unreceipted(cutoff) == 0
    view = await one.get(a.id)
    assert view is not None
    assert (view.message.state, view.message.last_error) == (MessageState.UNKNOWN, "receipt-timeout")
    assert view.history[-1].state is MessageState.UNKNOWN
    await one.record_receipts([ReceiptUpdate(f"up-{a.id}", True)])
    view = await one.get(a.id)
    assert view is not None
    assert view.message.state is MessageState.DELIVERED
    events = await one.webhook_events(a.id)
    assert [(e.state, e.reason) for e in events] == [
        ("submitted", None),
        ("unknown", "receipt-timeout"),
        ("delivered", None),
    ]
    assert (await one.webhook_events(b.id)) == []


async def test_receipt_timeout_leaves_recent_submits_alone(store: Store, clock: FakeClock) -> None:
    [a] = await store.enqueue([msg()])
    await _lease_one(store)
    await store.complete([Submitted(a.id, W.owner, "up-a")])
    assert await store.expire_unreceipted(at(clock, -1) - timedelta(seconds=0)) == 0
    view = await store.get(a.id)
    assert view is not None
    assert view.message.state is MessageState.SUBMITTED
