"""The store contract, run against both engines (SQLite file and real PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from store_helpers import FakeClock, msg

from tiergate.store import (
    Discard,
    DiscardFilter,
    DiscardGroup,
    Encoding,
    MessageState,
    NewMessage,
    NewReplayJob,
    NotFound,
    ReceiptUpdate,
    Release,
    ReplayState,
    RetryLater,
    SkipReason,
    Store,
    Submitted,
    WorkerIdentity,
    open_store,
)

W1 = WorkerIdentity("w1", "tier-0", "rev-a")
W2 = WorkerIdentity("w2", "tier-1", "rev-b")


def at(clock: FakeClock, seconds: float = 0) -> datetime:
    return datetime.fromtimestamp(clock.now + seconds, UTC)


async def test_enqueue_then_get_returns_fields_and_history(store: Store) -> None:
    [result] = await store.enqueue([msg(key="k1")])
    assert result.created
    view = await store.get(result.id)
    assert view is not None
    m = view.message
    assert (m.id, m.customer_id, m.traffic_class, m.destination) == (
        result.id,
        "acme",
        "otp",
        "+447700900123",
    )
    assert (m.state, m.attempts, m.idempotency_key, m.client_ref) == (
        MessageState.QUEUED,
        0,
        "k1",
        "ref-1",
    )
    assert [h.state for h in view.history] == [MessageState.QUEUED]
    assert await store.get("nope") is None


async def test_enqueue_answers_in_order_with_sortable_ids(store: Store) -> None:
    results = await store.enqueue([msg(body=f"m{i}") for i in range(50)])
    assert len({r.id for r in results}) == 50
    bodies = [(await store.get(r.id)).message.body for r in results]  # type: ignore[union-attr]
    assert bodies == [f"m{i}" for i in range(50)]


TRICKY_BODIES = (
    'quote " and backslash \\ and \\u0041 as text',
    "tab\tnewline\ncarriage\rreturn",
    "emoji 😀 and Ω ü € {}[]",
    '{"looks": ["like", "json"], "n": null}',
    "'; DROP TABLE messages; --",
)


async def test_a_large_mixed_batch_keeps_every_field_exactly(store: Store) -> None:
    """More rows than one multi-row statement takes, keyed and plain, text that needs escaping."""
    [earlier] = await store.enqueue([msg(key="seen-before")])
    batch = [
        NewMessage(
            customer_id="acme",
            traffic_class=("otp", "bulk")[i % 2],
            destination=f"+4477009{i:05d}",
            sender_id=("ACME", "+4915112345678")[i % 2],
            body=f"{TRICKY_BODIES[i % len(TRICKY_BODIES)]} #{i}",
            encoding=(Encoding.GSM7, Encoding.UCS2)[i % 2],
            segments=1 + i % 3,
            client_ref=None if i % 4 else f"ref-{i}",
            idempotency_key=None if i % 5 else f"key-{i}",
            callback_url=None if i % 3 else f"https://hooks.example/{i}?a=b&c='d'",
            expires_at=None if i % 6 else 4_000_000_000.25 + i,
            send_at=None if i % 7 else 3_000_000_000.5 + i,
        )
        for i in range(700)
    ]
    batch[350] = batch[350]._replace(idempotency_key="seen-before")
    results = await store.enqueue(batch)
    assert [r.created for r in results] == [i != 350 for i in range(700)]
    assert results[350].id == earlier.id
    assert len({r.id for r in results}) == 700
    for i in (0, 1, 2, 3, 4, 5, 255, 256, 257, 349, 351, 699):
        view = await store.get(results[i].id)
        assert view is not None
        m, sent = view.message, batch[i]
        assert (m.customer_id, m.traffic_class, m.destination, m.sender_id, m.body) == sent[:5]
        assert (m.encoding, m.segments, m.client_ref, m.idempotency_key) == sent[5:9]
        assert m.callback_url == sent.callback_url
        assert (m.expires_at.timestamp() if m.expires_at else None) == sent.expires_at
        assert (m.send_at.timestamp() if m.send_at else None) == sent.send_at
        assert m.state is MessageState.QUEUED
    stats = await store.queue_stats()
    assert (stats["otp"].queued, stats["bulk"].queued) == (350, 350)


async def test_idempotency_key_never_creates_a_second_message(store: Store) -> None:
    [first] = await store.enqueue([msg(key="k")])
    [again] = await store.enqueue([msg(key="k", body="different")])
    [other_customer] = await store.enqueue([msg(customer="globex", key="k")])
    in_batch = await store.enqueue([msg(key="b"), msg(key="b"), msg()])
    assert again.id == first.id
    assert not again.created
    assert other_customer.created
    assert other_customer.id != first.id
    assert in_batch[0].created
    assert not in_batch[1].created
    assert in_batch[2].created
    assert in_batch[1].id == in_batch[0].id
    stats = await store.queue_stats()
    assert stats["otp"].queued == 4


async def test_concurrent_enqueues_of_one_key_create_one_message(store: Store, open_more) -> None:
    other = await open_more()
    calls = [s.enqueue([msg(key="same")]) for s in (store, other) for _ in range(40)]
    results = [r for batch in await asyncio.gather(*calls) for r in batch]
    assert len({r.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert (await store.queue_stats())["otp"].queued == 1


async def test_a_failing_batch_stores_nothing_and_spares_its_neighbours(store: Store) -> None:
    bad = [msg(body="fine"), msg(body=None)]  # type: ignore[arg-type]
    good = [msg(body="ok1"), msg(body="ok2")]
    outcome = await asyncio.gather(store.enqueue(bad), store.enqueue(good), return_exceptions=True)
    assert isinstance(outcome[0], Exception)
    assert isinstance(outcome[1], list)
    assert len(outcome[1]) == 2
    leased = await store.lease("otp", W1, 10, 30)
    assert sorted(m.body for m in leased) == ["ok1", "ok2"]


async def test_group_commit_answers_every_caller(store: Store) -> None:
    results = await asyncio.gather(*(store.enqueue([msg(body=str(i))]) for i in range(1500)))
    ids = {r[0].id for r in results}
    assert len(ids) == 1500
    assert (await store.queue_stats())["otp"].queued == 1500
    assert store.counters.group_commits < 1500
    assert store.counters.grouped_requests >= 1500


async def test_lease_takes_due_messages_of_its_class_once(store: Store) -> None:
    await store.enqueue([msg() for _ in range(5)] + [msg(traffic_class="bulk")])
    first = await store.lease("otp", W1, 3, 30)
    second = await store.lease("otp", W2, 10, 30)
    assert len(first) == 3
    assert len(second) == 2
    assert not {m.id for m in first} & {m.id for m in second}
    assert await store.lease("otp", W1, 10, 30) == []
    m = first[0]
    assert (m.state, m.attempts, m.lease_owner, m.tier, m.revision) == (
        MessageState.IN_FLIGHT,
        1,
        "w1",
        "tier-0",
        "rev-a",
    )
    stats = await store.queue_stats()
    assert (stats["otp"].queued, stats["otp"].in_flight, stats["otp"].depth) == (0, 5, 5)
    assert stats["bulk"].queued == 1


async def test_expired_lease_goes_to_another_worker_and_the_stale_ack_is_refused(
    store: Store, clock: FakeClock
) -> None:
    [r] = await store.enqueue([msg()])
    [_leased] = await store.lease("otp", W1, 1, 30)
    clock.advance(29)
    assert await store.lease("otp", W2, 1, 30) == []
    clock.advance(2)
    [again] = await store.lease("otp", W2, 1, 30)
    assert again.id == r.id
    assert again.attempts == 2
    assert again.tier == "tier-1"
    assert not await store.mark_submitted(r.id, "w1", "up-stale")
    assert store.stale_acks == 1
    assert not await store.discard(r.id, "w1", "late")
    assert await store.mark_submitted(r.id, "w2", "up-1")
    view = await store.get(r.id)
    assert view is not None
    assert view.message.upstream_message_id == "up-1"
    assert view.message.state == MessageState.SUBMITTED
    assert (await store.list_discards(DiscardFilter())).items == ()


async def test_extend_leases_keeps_a_slow_message(store: Store, clock: FakeClock) -> None:
    [r] = await store.enqueue([msg()])
    await store.lease("otp", W1, 1, 10)
    clock.advance(8)
    assert await store.extend_leases([r.id, "unknown"], "w1", 10) == [True, False]
    assert await store.extend_leases([r.id], "w2", 10) == [False]
    clock.advance(8)
    assert await store.lease("otp", W2, 1, 10) == []
    clock.advance(3)
    assert [m.id for m in await store.lease("otp", W2, 1, 10)] == [r.id]


async def test_retry_later_schedules_the_next_attempt(store: Store, clock: FakeClock) -> None:
    [r] = await store.enqueue([msg()])
    await store.lease("otp", W1, 1, 30)
    due = at(clock, 10)
    assert await store.retry_later(r.id, "w1", due, "ESME_RTHROTTLED")
    assert not await store.retry_later(r.id, "w1", due, "again")
    clock.advance(9.9)
    assert await store.lease("otp", W1, 1, 30) == []
    clock.now = due.timestamp()
    [m] = await store.lease("otp", W2, 1, 30)
    assert (m.id, m.attempts, m.last_error) == (r.id, 2, "ESME_RTHROTTLED")
    assert m.next_attempt_at == due


async def test_release_returns_the_message_without_counting_the_attempt(store: Store) -> None:
    [r] = await store.enqueue([msg()])
    await store.lease("otp", W1, 1, 30)
    assert await store.release(r.id, "w1")
    [m] = await store.lease("otp", W2, 1, 30)
    assert (m.id, m.attempts) == (r.id, 1)


async def test_discard_writes_its_event_in_the_same_transaction(store: Store, clock: FakeClock) -> None:
    [r] = await store.enqueue([msg(customer="c9", traffic_class="bulk")])
    created = at(clock)
    clock.advance(5)
    await store.lease("bulk", W1, 1, 30)
    assert await store.discard(r.id, "w1", "invalid_destination", "ESME_RINVDSTADR")
    assert not await store.discard(r.id, "w1", "twice")
    page = await store.list_discards(DiscardFilter())
    [event] = page.items
    assert (event.message_id, event.customer_id, event.traffic_class) == (r.id, "c9", "bulk")
    assert (event.tier, event.revision, event.reason, event.upstream_error) == (
        "tier-0",
        "rev-a",
        "invalid_destination",
        "ESME_RINVDSTADR",
    )
    assert (event.attempts, event.discarded_at, event.message_created_at) == (1, at(clock), created)
    assert event.replay_job_id is None
    assert page.next_cursor is None
    view = await store.get(r.id)
    assert view is not None
    assert view.message.state == MessageState.DISCARDED
    assert [h.state for h in view.history] == [
        MessageState.QUEUED,
        MessageState.IN_FLIGHT,
        MessageState.DISCARDED,
    ]
    assert (await store.queue_stats()).get("bulk") is None


async def test_complete_applies_mixed_outcomes_in_one_call(store: Store, clock: FakeClock) -> None:
    results = await store.enqueue([msg() for _ in range(4)])
    await store.lease("otp", W1, 4, 30)
    a, b, d, e = (r.id for r in results)
    done = await store.complete(
        [
            Submitted(a, "w1", "up-a"),
            RetryLater(b, "w1", at(clock, 60), "timeout"),
            Discard(d, "w1", "expired"),
            Release(e, "w2"),
        ]
    )
    assert done == [True, True, True, False]
    states = [(await store.get(i)).message.state for i in (a, b, d, e)]  # type: ignore[union-attr]
    assert states == [
        MessageState.SUBMITTED,
        MessageState.QUEUED,
        MessageState.DISCARDED,
        MessageState.IN_FLIGHT,
    ]


async def test_history_keeps_each_detail_as_data_and_as_its_sentence(store: Store, clock: FakeClock) -> None:
    [r] = await store.enqueue([msg()])
    await store.lease("otp", W1, 1, 30)
    assert await store.retry_later(r.id, "w1", at(clock), "ESME_RTHROTTLED")
    clock.advance(1)
    assert [m.id for m in await store.lease("otp", W2, 1, 30)] == [r.id]
    assert await store.release(r.id, "w2")
    await store.lease("otp", W2, 1, 30)
    assert await store.discard(r.id, "w2", "expired")
    [discard] = (await store.list_discards(DiscardFilter())).items
    job = await store.create_replay_job(NewReplayJob(DiscardFilter(), id="job-1"))
    await store.claim_for_replay([discard.id], job.id)
    await store.lease("otp", W1, 1, 30)
    assert await store.mark_submitted(r.id, "w1", "up-1")
    await store.record_receipt("up-1", False, "stat=UNDELIV err=034")
    view = await store.get(r.id)
    assert view is not None
    assert [(h.state, h.detail) for h in view.history] == [
        (MessageState.QUEUED, "accepted"),
        (MessageState.IN_FLIGHT, "owner=w1 tier=tier-0 revision=rev-a"),
        (MessageState.QUEUED, "retry: ESME_RTHROTTLED"),
        (MessageState.IN_FLIGHT, "owner=w2 tier=tier-1 revision=rev-b"),
        (MessageState.QUEUED, "released unsent"),
        (MessageState.IN_FLIGHT, "owner=w2 tier=tier-1 revision=rev-b"),
        (MessageState.DISCARDED, "reason=expired"),
        (MessageState.QUEUED, "replay job=job-1"),
        (MessageState.IN_FLIGHT, "owner=w1 tier=tier-0 revision=rev-a"),
        (MessageState.SUBMITTED, "upstream_id=up-1"),
        (MessageState.FAILED, "stat=UNDELIV err=034"),
    ]
    assert [dict(h.data) for h in view.history[1:3]] == [
        {"event": "leased", "owner": "w1", "tier": "tier-0", "revision": "rev-a"},
        {"event": "retry", "error": "ESME_RTHROTTLED"},
    ]
    assert view.history[-1].data == {"event": "receipt", "receipt": "stat=UNDELIV err=034"}


async def test_the_bulk_read_tells_each_fate_and_which_revisions_leased_it(
    store: Store, clock: FakeClock
) -> None:
    ids = {r.id for r in await store.enqueue([msg(), msg(), msg()])}
    a, b = (m.id for m in await store.lease("otp", W1, 2, 30))
    [c] = ids - {a, b}
    assert await store.retry_later(a, "w1", at(clock), "timeout")
    assert await store.mark_submitted(b, "w1", "up-b")
    await store.record_receipt("up-b", True, "DELIVRD")
    delivered_at = at(clock)
    clock.advance(1)
    leased = {m.id for m in await store.lease("otp", W2, 2, 30)}
    assert leased == {a, c}
    assert await store.discard(c, "w2", "expired")
    fates = {f.id: f for f in await store.message_fates({"rev-a", "rev-z"})}
    assert {i: (f.state, f.leased_by, f.replay_count) for i, f in fates.items()} == {
        a: (MessageState.IN_FLIGHT, frozenset({"rev-a"}), 0),
        b: (MessageState.DELIVERED, frozenset({"rev-a"}), 0),
        c: (MessageState.DISCARDED, frozenset(), 0),
    }
    assert fates[b].delivered_at == delivered_at
    assert fates[a].delivered_at is None
    both = {f.id: f.leased_by for f in await store.message_fates({"rev-a", "rev-b"})}
    assert both[a] == frozenset({"rev-a", "rev-b"})
    assert {f.leased_by for f in await store.message_fates(())} == {frozenset()}
    assert await store.count_states() == {
        MessageState.IN_FLIGHT: 1,
        MessageState.DELIVERED: 1,
        MessageState.DISCARDED: 1,
    }


async def test_receipts_update_state_even_when_they_come_first(store: Store) -> None:
    results = await store.enqueue([msg() for _ in range(3)])
    await store.lease("otp", W1, 3, 30)
    a, b, c = (r.id for r in results)
    await store.complete([Submitted(a, "w1", "up-a"), Submitted(b, "w1", "up-b")])
    delivered = await store.record_receipt("up-a", True, "DELIVRD")
    failed = await store.record_receipt("up-b", False, "UNDELIV")
    early = await store.record_receipt("up-c", True, "DELIVRD")
    assert delivered is not None
    assert delivered.state == MessageState.DELIVERED
    assert delivered.delivered_at is not None
    assert failed is not None
    assert failed.state == MessageState.FAILED
    assert failed.last_error == "UNDELIV"
    assert early is None
    assert store.counters.orphan_receipts == 1
    assert await store.mark_submitted(c, "w1", "up-c")
    view = await store.get(c)
    assert view is not None
    assert view.message.state == MessageState.DELIVERED
    repeat = await store.record_receipt("up-a", False, "late duplicate")
    assert repeat is not None
    assert repeat.state == MessageState.DELIVERED


async def test_a_batch_of_receipts_applies_each_once_the_first_of_a_repeated_id_winning(store: Store) -> None:
    results = await store.enqueue([msg() for _ in range(2)])
    await store.lease("otp", W1, 2, 30)
    a, b = (r.id for r in results)
    await store.complete([Submitted(a, "w1", "up-a"), Submitted(b, "w1", "up-b")])
    found = await store.record_receipts(
        [
            ReceiptUpdate("up-a", True, "DELIVRD"),
            ReceiptUpdate("up-b", False, "stat=UNDELIV err=034"),
            ReceiptUpdate("up-a", False, "stat=REJECTD err=001"),
            ReceiptUpdate("up-x", True, "DELIVRD"),
        ]
    )
    assert [m.id if m else None for m in found] == [a, b, a, None]
    view_a, view_b = await store.get(a), await store.get(b)
    assert view_a is not None
    assert view_b is not None
    assert (view_a.message.state, view_a.message.last_error) == (MessageState.DELIVERED, None)
    assert (view_b.message.state, view_b.message.last_error) == (MessageState.FAILED, "stat=UNDELIV err=034")
    assert [(h.state, h.detail) for h in view_a.history][-1] == (MessageState.DELIVERED, "DELIVRD")
    assert [(h.state, h.detail) for h in view_b.history][-1] == (MessageState.FAILED, "stat=UNDELIV err=034")
    assert store.counters.orphan_receipts == 1


async def test_queue_stats_report_the_oldest_queued(store: Store, clock: FakeClock) -> None:
    oldest = at(clock)
    await store.enqueue([msg()])
    clock.advance(30)
    await store.enqueue([msg(), msg(traffic_class="bulk")])
    stats = await store.queue_stats()
    assert stats["otp"].oldest_queued_at == oldest
    assert stats["bulk"].oldest_queued_at == at(clock)
    assert stats["otp"].queued == 2


async def test_migrations_are_idempotent(store_url: str, clock: FakeClock) -> None:
    first = await open_store(store_url, clock=clock)
    await first.enqueue([msg()])
    await first.close()
    again = await asyncio.gather(*(open_store(store_url, clock=clock) for _ in range(4)))
    for s in again:
        await s.ping()
    assert (await again[0].queue_stats())["otp"].queued == 1
    for s in again:
        await s.close()


async def test_two_workers_never_lease_the_same_message(store: Store, open_more) -> None:
    other = await open_more()
    await store.enqueue([msg() for _ in range(600)])
    seen: dict[str, list[str]] = {"w1": [], "w2": []}

    async def work(s: Store, worker: WorkerIdentity) -> None:
        while True:
            leased = await s.lease("otp", worker, 7, 60)
            if not leased:
                return
            seen[worker.owner].extend(m.id for m in leased)
            await asyncio.sleep(0.002)  # the upstream submit: the other worker leases meanwhile
            done = await s.complete([Submitted(m.id, worker.owner, f"u-{m.id}") for m in leased])
            assert all(done)

    await asyncio.gather(work(store, W1), work(other, W2))
    assert not set(seen["w1"]) & set(seen["w2"])
    assert len(seen["w1"]) + len(seen["w2"]) == 600
    assert len(set(seen["w1"]) | set(seen["w2"])) == 600
    assert seen["w1"]
    assert seen["w2"]


# --- discards and replay ----------------------------------------------------------------

DISCARDS = [
    # label, customer, traffic class, tier (worker), reason, minutes after start
    ("a", "c1", "otp", W1, "throttled", 0),
    ("b", "c1", "bulk", W1, "invalid_destination", 10),
    ("c", "c2", "otp", W2, "throttled", 20),
    ("d", "c3", "bulk", W2, "expired", 30),
    ("e", "c2", "bulk", W1, "expired", 40),
    ("f", "c3", "otp", W2, "upstream_down", 50),
]


async def _seed_discards(store: Store, clock: FakeClock) -> tuple[datetime, dict[str, str]]:
    start = at(clock)
    labels: dict[str, str] = {}
    for label, customer, tc, worker, reason, minute in DISCARDS:
        clock.now = start.timestamp() + minute * 60
        [r] = await store.enqueue([msg(customer=customer, traffic_class=tc, body=label)])
        await store.lease(tc, worker, 1, 30)
        assert await store.discard(r.id, worker.owner, reason, f"err-{label}")
        labels[r.id] = label
    clock.now = start.timestamp() + 3600
    job = await store.create_replay_job(NewReplayJob(DiscardFilter()))
    page = await store.list_discards(DiscardFilter(customer_ids=("c3",)))
    claim_f = [d.id for d in page.items if labels[d.message_id] == "f"]
    await store.claim_for_replay(claim_f, job.id)
    return start, labels


def _filters(start: datetime) -> list[tuple[str, DiscardFilter, str]]:
    minute = timedelta(minutes=1)
    return [
        ("everything", DiscardFilter(), "abcdef"),
        ("since", DiscardFilter(since=start + 20 * minute), "cdef"),
        ("until is exclusive", DiscardFilter(until=start + 20 * minute), "ab"),
        ("window", DiscardFilter(since=start + 10 * minute, until=start + 41 * minute), "bcde"),
        ("one customer", DiscardFilter(customer_ids=("c2",)), "ce"),
        ("two customers", DiscardFilter(customer_ids=("c1", "c3")), "abdf"),
        ("tier", DiscardFilter(tiers=("tier-1",)), "cdf"),
        ("revision", DiscardFilter(revisions=("rev-a",)), "abe"),
        ("reason", DiscardFilter(reasons=("throttled", "expired")), "acde"),
        ("traffic class", DiscardFilter(traffic_classes=("bulk",)), "bde"),
        ("replayed", DiscardFilter(replayed=True), "f"),
        ("not replayed", DiscardFilter(replayed=False), "abcde"),
        (
            "combined",
            DiscardFilter(since=start + 5 * minute, tiers=("tier-0",), traffic_classes=("bulk",)),
            "be",
        ),
        ("message age", DiscardFilter(message_created_since=start + 35 * minute), "ef"),
        ("no match", DiscardFilter(customer_ids=("c1",), tiers=("tier-1",)), ""),
        ("unknown reason", DiscardFilter(reasons=("nope",)), ""),
    ]


async def test_discard_filters_select_exactly_the_right_discards(store: Store, clock: FakeClock) -> None:
    start, labels = await _seed_discards(store, clock)
    failures = []
    for name, f, expected in _filters(start):
        got: list[str] = []
        cursor = None
        while True:
            page = await store.list_discards(f, limit=2, cursor=cursor)
            got.extend(labels[d.message_id] for d in page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if got != sorted(expected, reverse=True):
            failures.append((name, got, expected))
        counted = await store.count_discards(f, DiscardGroup.REASON)
        if sum(counted.values()) != len(expected):
            failures.append((name, counted, expected))
    assert failures == []


async def test_discard_counts_group_by_every_dimension(store: Store, clock: FakeClock) -> None:
    await _seed_discards(store, clock)
    f = DiscardFilter()
    assert await store.count_discards(f, DiscardGroup.REASON) == {
        "throttled": 2,
        "invalid_destination": 1,
        "expired": 2,
        "upstream_down": 1,
    }
    assert await store.count_discards(f, DiscardGroup.TIER) == {"tier-0": 3, "tier-1": 3}
    assert await store.count_discards(f, DiscardGroup.CUSTOMER) == {"c1": 2, "c2": 2, "c3": 2}
    assert await store.count_discards(f, DiscardGroup.REVISION) == {"rev-a": 3, "rev-b": 3}
    assert await store.count_discards(f, DiscardGroup.TRAFFIC_CLASS) == {"otp": 3, "bulk": 3}


async def _discarded(store: Store, n: int, customer: str = "acme") -> list[str]:
    results = await store.enqueue([msg(customer=customer, key=f"k{i}") for i in range(n)])
    leased = await store.lease("otp", W1, n, 30)
    assert len(leased) == n
    await store.complete([Discard(m.id, "w1", "upstream_down") for m in leased])
    page = await store.list_discards(DiscardFilter(customer_ids=(customer,)), limit=n)
    assert len(page.items) == n
    assert {d.message_id for d in page.items} == {r.id for r in results}
    return [d.id for d in page.items]


async def test_claim_requeues_the_original_message_once(store: Store) -> None:
    [discard_id] = await _discarded(store, 1)
    job = await store.create_replay_job(NewReplayJob(DiscardFilter(), rate=50.0))
    other = await store.create_replay_job(NewReplayJob(DiscardFilter()))
    [claim] = await store.claim_for_replay([discard_id], job.id)
    assert claim.claimed
    [m] = await store.lease("otp", W2, 1, 30)
    assert (m.id, m.attempts, m.replay_count, m.replay_job_id) == (
        claim.message_id,
        1,
        1,
        job.id,
    )
    assert m.idempotency_key == "k0"
    [again] = await store.claim_for_replay([discard_id], job.id)
    assert again.skip_reason == SkipReason.CLAIMED_BY_THIS_JOB
    [by_other, missing] = await store.claim_for_replay([discard_id, "missing"], other.id)
    assert by_other.skip_reason == SkipReason.ALREADY_REPLAYED
    assert missing.skip_reason == SkipReason.NOT_FOUND
    stored = await store.get_replay_job(job.id)
    assert stored is not None
    assert (stored.replayed, stored.skipped) == (1, 0)
    stored_other = await store.get_replay_job(other.id)
    assert stored_other is not None
    assert (stored_other.replayed, stored_other.skipped) == (0, 2)
    [event] = (await store.list_discards(DiscardFilter(replayed=True))).items
    assert event.replay_job_id == job.id
    assert event.replayed_at is not None
    with pytest.raises(NotFound):
        await store.claim_for_replay([discard_id], "no-such-job")


async def test_a_replayed_message_discarded_again_can_be_replayed_again(store: Store) -> None:
    [first] = await _discarded(store, 1)
    job = await store.create_replay_job(NewReplayJob(DiscardFilter()))
    [claim] = await store.claim_for_replay([first], job.id)
    [m] = await store.lease("otp", W1, 1, 30)
    await store.discard(m.id, "w1", "upstream_down")
    page = await store.list_discards(DiscardFilter(replayed=False))
    [second] = page.items
    job2 = await store.create_replay_job(NewReplayJob(DiscardFilter()))
    [claim2] = await store.claim_for_replay([second.id], job2.id)
    assert claim2.claimed
    assert claim2.message_id == claim.message_id
    [m2] = await store.lease("otp", W1, 1, 30)
    assert m2.replay_count == 2
    assert await store.mark_submitted(m2.id, "w1", "up-x")
    view = await store.get(m2.id)
    assert view is not None
    assert [h.state for h in view.history].count(MessageState.DISCARDED) == 2


async def test_concurrent_replay_claims_are_exactly_once(store: Store, open_more) -> None:
    discard_ids = await _discarded(store, 200)
    other = await open_more()
    job_a = await store.create_replay_job(NewReplayJob(DiscardFilter()))
    job_b = await store.create_replay_job(NewReplayJob(DiscardFilter()))

    async def claim(s: Store, job_id: str, ids: list[str]) -> list[str]:
        won: list[str] = []
        for i in range(0, len(ids), 15):
            outcomes = await s.claim_for_replay(ids[i : i + 15], job_id)
            won.extend(o.message_id for o in outcomes if o.claimed and o.message_id)
        return won

    won_a, won_b = await asyncio.gather(
        claim(store, job_a.id, discard_ids),
        claim(other, job_b.id, list(reversed(discard_ids))),
    )
    assert not set(won_a) & set(won_b)
    assert len(won_a) + len(won_b) == 200
    a = await store.get_replay_job(job_a.id)
    b = await store.get_replay_job(job_b.id)
    assert a is not None
    assert b is not None
    assert (a.replayed + b.replayed, a.skipped + b.skipped) == (200, 200)
    assert (await store.queue_stats())["otp"].queued == 200


async def test_replay_jobs_are_stored_and_updated(store: Store, clock: FakeClock) -> None:
    f = DiscardFilter(since=at(clock), customer_ids=("c1", "c2"), replayed=False)
    job = await store.create_replay_job(
        NewReplayJob(f, rate=100.0, dry_run=True, max_age_seconds=600, source="halt:ns/t0")
    )
    assert (job.state, job.filter, job.rate, job.dry_run) == (ReplayState.PENDING, f, 100.0, True)
    assert (job.max_age_seconds, job.source) == (600, "halt:ns/t0")
    clock.advance(1)
    running = await store.update_replay_job(
        job.id, state=ReplayState.RUNNING, expected_states=[ReplayState.PENDING], matched=42
    )
    assert running is not None
    assert running.matched == 42
    assert running.updated_at == at(clock)
    refused = await store.update_replay_job(
        job.id, state=ReplayState.RUNNING, expected_states=[ReplayState.PENDING]
    )
    assert refused is None
    done = await store.update_replay_job(job.id, state=ReplayState.DONE, add_failed=3, cursor="c", error="e")
    assert done is not None
    assert (done.failed, done.cursor, done.error) == (3, "c", "e")
    later = await store.create_replay_job(NewReplayJob(DiscardFilter(), id="job-z"))
    assert later.id == "job-z"
    assert [j.id for j in await store.list_replay_jobs([ReplayState.DONE])] == [job.id]
    assert {j.id for j in await store.list_replay_jobs()} == {job.id, "job-z"}
    assert await store.get_replay_job("nope") is None
    with pytest.raises(NotFound):
        await store.update_replay_job("nope", state=ReplayState.DONE)
