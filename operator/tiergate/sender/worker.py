"""The tier worker loop: lease, submit within a window, record the outcome, repeat.

One `Worker` serves one traffic class for one tier and revision. Outcomes and delivery
receipts are written in batches, so a fast upstream is not held back by one commit per
message. A receipt that arrives before its submit's outcome is committed waits for that
commit (then it updates the message directly instead of being parked), and is acknowledged
upstream only once stored. Leases of messages still in flight are extended before they
expire, so a slow or rate-limited upstream does not cause resends. A message holds its
window slot until its outcome is committed, not only until the submit returns: so at most
`window` messages were ever sent without a stored outcome, and a worker killed with -9
resends at most its window when the leases expire. A worker that stops
(SIGTERM) leases nothing more, waits for submits in flight, and hands back what it never
sent.

Each message is routed to one of the upstream's connectors (`tiergate.sender.upstream`). A
throttle answer lowers that connector's rate and the message is routed again; so is a message
whose connector lost its binds. Neither spends an attempt. A message that no connector can
take waits in the worker for up to `reroute_wait`, then goes back to the queue unsent (its
attempt not counted), so a downstream outage never discards within the message's max age.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from tiergate.domain.webhooks import REASON_EXPIRED
from tiergate.sender import metrics
from tiergate.sender.connectors.base import Connector, Outbound, Receipt
from tiergate.sender.errors import (
    PermanentError,
    ThrottledError,
    TransientError,
    UnavailableError,
    UpstreamError,
)
from tiergate.sender.retry import REASON_REJECTED, RetryPolicy
from tiergate.sender.upstream import Upstream
from tiergate.store import (
    Discard,
    Message,
    ReceiptUpdate,
    Release,
    RetryLater,
    Store,
    Submitted,
    WorkerIdentity,
    WorkerOutcome,
)

log = logging.getLogger(__name__)

RECEIPT_MEMORY = 100_000
EARLY_RECEIPT_WAIT = 2.0


@dataclass(frozen=True)
class WorkerOptions:
    """Tuning of one worker."""

    window: int = 256
    lease_batch: int = 512
    visibility_timeout: float = 60.0
    poll_interval: float = 0.05
    # An idle worker backs off to this: a message that finds its queue empty waits at most
    # this long for a lease (0.5 s made the p99 accept-to-submit 0.2-0.6 s at 1,000/s).
    max_poll_interval: float = 0.1
    drain_timeout: float = 20.0
    # How long a leased message waits in the worker for a connector before it is handed back.
    reroute_wait: float = 2.0
    # Throttle answers one message may get before it is handed back to the queue.
    max_throttled: int = 50
    policy: RetryPolicy = field(default_factory=RetryPolicy)


class Worker:
    """Moves one traffic class's queue to the upstream."""

    def __init__(
        self,
        store: Store,
        upstream: Upstream | Connector,
        identity: WorkerIdentity,
        traffic_class: str,
        options: WorkerOptions | None = None,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.upstream = upstream if isinstance(upstream, Upstream) else Upstream.single(upstream)
        self.identity = identity
        self.traffic_class = traffic_class
        self.options = options = options or WorkerOptions()
        self._clock = clock
        self._rng = random.Random(seed)
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(options.window)
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcomes: asyncio.Queue[tuple[WorkerOutcome, str]] = asyncio.Queue()
        self._writing = 0
        self._receipts: asyncio.Queue[Receipt] = asyncio.Queue()
        self._accepted_at: dict[str, float] = {}
        self._leased_at: dict[str, float] = {}
        self._unstored: dict[str, list[Receipt]] = {}
        self._early: dict[str, list[Receipt]] = {}
        self.running = False
        self.heartbeat = 0.0
        labels = {"tier": identity.tier, "revision": identity.revision}
        metrics.IN_FLIGHT.labels(**labels).set_function(lambda: len(self._tasks))
        self._latency = metrics.SUBMIT_LATENCY.labels(**labels)
        self._retries = metrics.RETRIES.labels(**labels)
        self._receipt_latency = metrics.RECEIPT_LATENCY.labels(**labels)
        self._receipts_by_outcome = {
            delivered: metrics.RECEIPTS.labels(**labels, state="delivered" if delivered else "failed")
            for delivered in (True, False)
        }
        # Every result series exists from the start at zero, so an error ratio of a healthy
        # revision is 0, not "no data".
        self._ok, self._error, self._throttled = (
            self._submits(result) for result in ("ok", "error", "throttled")
        )
        self.upstream.on_receipt(self._receipts_put)

    def _submits(self, result: str) -> Counter:
        return metrics.SUBMITS.labels(
            tier=self.identity.tier,
            revision=self.identity.revision,
            traffic_class=self.traffic_class,
            result=result,
        )

    def _receipts_put(self, receipt: Receipt) -> None:
        upstream_id = receipt.upstream_id
        held = self._unstored.get(upstream_id)
        if held is not None:
            held.append(receipt)
        elif upstream_id in self._accepted_at or self._stopping.is_set():
            self._receipts.put_nowait(receipt)
        else:
            # An SMSC may send a receipt before the submit_sm_resp it belongs to.
            early = self._early.setdefault(upstream_id, [])
            early.append(receipt)
            if len(early) == 1:
                asyncio.get_running_loop().call_later(EARLY_RECEIPT_WAIT, self._release_early, upstream_id)

    def _release_early(self, upstream_id: str) -> None:
        for receipt in self._early.pop(upstream_id, ()):
            self._receipts.put_nowait(receipt)

    def stop(self) -> None:
        """Ask the loop to stop leasing and drain."""
        self._stopping.set()

    async def run(self) -> None:
        """Lease and submit until stopped, then drain what is in flight."""
        completer = asyncio.create_task(self._complete_loop(), name="worker-complete")
        receipts = asyncio.create_task(self._receipt_loop(), name="worker-receipts")
        extender = asyncio.create_task(self._extend_loop(), name="worker-extend")
        self.running = True
        log.info(
            "Worker started tier=%s revision=%s traffic_class=%s window=%d",
            self.identity.tier,
            self.identity.revision,
            self.traffic_class,
            self.options.window,
        )
        try:
            await self._lease_loop()
        finally:
            self.running = False
            await self._drain()
            for task in (completer, receipts, extender):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._flush_outcomes()
            for upstream_id in list(self._early):
                self._release_early(upstream_id)
            await self._flush_receipts()
            log.info("Worker stopped tier=%s revision=%s", self.identity.tier, self.identity.revision)

    async def _lease_loop(self) -> None:
        idle = self.options.poll_interval
        while not self._stopping.is_set():
            self.heartbeat = time.monotonic()
            if not self.upstream.can_send():
                await self._sleep(0.05)
                continue
            free = self._free_slots()
            if free <= 0:
                await self._sleep(0.005)
                continue
            try:
                leased = await self.store.lease(
                    self.traffic_class,
                    self.identity,
                    min(free, self.options.lease_batch),
                    self.options.visibility_timeout,
                )
            except Exception as exc:
                log.warning("Lease failed traffic_class=%s error=%r", self.traffic_class, exc)
                await self._sleep(1.0)
                continue
            if not leased:
                await self._sleep(idle)
                idle = min(self.options.max_poll_interval, idle * 2)
                continue
            idle = self.options.poll_interval
            now = time.monotonic()
            for message in leased:
                self._leased_at[message.id] = now
                await self._slots.acquire()
                task = asyncio.create_task(self._send(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _free_slots(self) -> int:
        uncommitted = self._outcomes.qsize() + self._writing
        return self.options.window - len(self._tasks) - uncommitted

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _drain(self) -> None:
        if not self._tasks:
            return
        log.info("Worker draining in_flight=%d", len(self._tasks))
        _done, pending = await asyncio.wait(set(self._tasks), timeout=self.options.drain_timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _send(self, message: Message) -> None:
        owner = self.identity.owner
        try:
            now = self._clock()
            if message.expires_at is not None and now >= message.expires_at.timestamp():
                self._discard(message, REASON_EXPIRED, None)
                return
            if now - _due_since(message) >= self.options.policy.max_age:
                self._discard(message, "max-age", None)
                return
            upstream_id = await self._route(message)
            if upstream_id is None:
                self._outcomes.put_nowait((Release(message.id, owner), ""))
                return
            self._ok.inc()
            self._remember(upstream_id, message.created_at.timestamp())
            self._unstored.setdefault(upstream_id, []).extend(self._early.pop(upstream_id, ()))
            self._outcomes.put_nowait((Submitted(message.id, owner, upstream_id), ""))
        except asyncio.CancelledError:
            self._outcomes.put_nowait((Release(message.id, owner), ""))
        except PermanentError as exc:
            self._error.inc()
            self._discard(message, REASON_REJECTED, exc)
        except TransientError as exc:
            self._error.inc()
            self._transient(message, exc)
        except Exception as exc:
            log.exception("Submit crashed message_id=%s", message.id)
            self._error.inc()
            self._transient(message, TransientError(repr(exc), code="internal"))
        finally:
            self._leased_at.pop(message.id, None)
            self._slots.release()

    async def _route(self, message: Message) -> str | None:
        """Submit through a connector serving the destination; None to hand the message back."""
        outbound = Outbound(
            message_id=message.id,
            source=message.sender_id,
            destination=message.destination,
            body=message.body,
            validity=message.expires_at,
        )
        if self.upstream.should_fail():
            raise TransientError("Injected submit failure (fault fail-submits)", code="fault")
        throttled = unavailable = 0
        waited_since: float | None = None
        while True:
            link = self.upstream.route(message.destination)
            if link is None:
                now = time.monotonic()
                waited_since = waited_since or now
                if self._stopping.is_set() or now - waited_since >= self.options.reroute_wait:
                    return None
                await self._sleep(0.05)
                continue
            waited_since = None
            started = time.perf_counter()
            try:
                upstream_id = await link.submit(outbound)
            except ThrottledError:
                self._throttled.inc()
                throttled += 1
                if throttled >= self.options.max_throttled:
                    return None
                continue
            except UnavailableError:
                unavailable += 1
                if unavailable % 5 == 0:
                    await self._sleep(0.05)
                if self._stopping.is_set():
                    return None
                continue
            self._latency.observe(time.perf_counter() - started)
            return upstream_id

    def _remember(self, upstream_id: str, created: float) -> None:
        self._accepted_at[upstream_id] = created
        if len(self._accepted_at) > RECEIPT_MEMORY:
            del self._accepted_at[next(iter(self._accepted_at))]

    def _transient(self, message: Message, exc: UpstreamError) -> None:
        age = self._clock() - _due_since(message)
        reason = self.options.policy.give_up_reason(message.attempts, age)
        if reason is not None:
            self._discard(message, reason, exc)
            return
        delay = self.options.policy.backoff(message.attempts, self._rng)
        not_before = datetime.fromtimestamp(self._clock(), UTC) + timedelta(seconds=delay)
        self._retries.inc()
        self._outcomes.put_nowait(
            (RetryLater(message.id, self.identity.owner, not_before, _describe(exc)), "")
        )

    def _discard(self, message: Message, reason: str, exc: UpstreamError | None) -> None:
        metrics.DISCARDS.labels(
            tier=self.identity.tier,
            revision=self.identity.revision,
            traffic_class=self.traffic_class,
            reason=reason,
        ).inc()
        log.warning(
            "Message discarded message_id=%s customer=%s reason=%s attempts=%d upstream_error=%s",
            message.id,
            message.customer_id,
            reason,
            message.attempts,
            _describe(exc) if exc else "",
        )
        self._outcomes.put_nowait(
            (Discard(message.id, self.identity.owner, reason, _describe(exc) if exc else None), reason)
        )

    async def _complete_loop(self) -> None:
        while True:
            first = await self._outcomes.get()
            batch = [first]
            while not self._outcomes.empty() and len(batch) < 512:
                batch.append(self._outcomes.get_nowait())
            await self._write_outcomes(batch)

    async def _flush_outcomes(self) -> None:
        batch = []
        while not self._outcomes.empty():
            batch.append(self._outcomes.get_nowait())
        if batch:
            await self._write_outcomes(batch)

    async def _write_outcomes(self, batch: list[tuple[WorkerOutcome, str]]) -> None:
        self._writing += len(batch)
        try:
            await self._store_outcomes(batch)
        finally:
            self._writing -= len(batch)
            for outcome, _ in batch:
                if isinstance(outcome, Submitted):
                    for receipt in self._unstored.pop(outcome.upstream_message_id, ()):
                        self._receipts.put_nowait(receipt)

    async def _store_outcomes(self, batch: list[tuple[WorkerOutcome, str]]) -> None:
        for attempt in range(5):
            try:
                results = await self.store.complete([outcome for outcome, _ in batch])
            except Exception as exc:
                log.warning(
                    "Outcomes not recorded count=%d attempt=%d error=%r", len(batch), attempt + 1, exc
                )
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
                continue
            stale = sum(1 for ok in results if not ok)
            if stale:
                log.warning("Outcomes refused for lost leases count=%d", stale)
            return
        log.error("Outcomes dropped after retries count=%d; leases will expire and resend", len(batch))

    async def _receipt_loop(self) -> None:
        while True:
            first = await self._receipts.get()
            batch = [first]
            while not self._receipts.empty() and len(batch) < 512:
                batch.append(self._receipts.get_nowait())
            await self._write_receipts(batch)

    async def _flush_receipts(self) -> None:
        batch = []
        while not self._receipts.empty():
            batch.append(self._receipts.get_nowait())
        if batch:
            await self._write_receipts(batch)

    async def _write_receipts(self, batch: list[Receipt]) -> None:
        records = [ReceiptUpdate(r.upstream_id, r.delivered, _receipt_detail(r)) for r in batch]
        for attempt in range(5):
            try:
                updated = await self.store.record_receipts(records)
                break
            except Exception as exc:
                log.warning(
                    "Receipts not recorded count=%d attempt=%d error=%r", len(batch), attempt + 1, exc
                )
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
        else:
            log.error("Receipts left unacknowledged after retries count=%d", len(batch))
            return
        now = self._clock()
        counted = self._receipts_by_outcome
        for receipt, message in zip(batch, updated, strict=True):
            receipt.ack()
            counted[receipt.delivered].inc()
            created = self._accepted_at.pop(receipt.upstream_id, None)
            if created is None and message is not None:
                created = message.created_at.timestamp()
            if created is not None:
                self._receipt_latency.observe(max(0.0, now - created))

    async def _extend_loop(self) -> None:
        timeout = self.options.visibility_timeout
        while True:
            await asyncio.sleep(timeout / 4)
            now = time.monotonic()
            due = [mid for mid, at in self._leased_at.items() if now - at > timeout / 2]
            if not due:
                continue
            try:
                held = await self.store.extend_leases(due, self.identity.owner, timeout)
            except Exception as exc:
                log.warning("Leases not extended count=%d error=%r", len(due), exc)
                continue
            for mid, ok in zip(due, held, strict=True):
                if ok and mid in self._leased_at:
                    self._leased_at[mid] = now
            lost = held.count(False)
            if lost:
                log.warning("Leases lost while in flight count=%d owner=%s", lost, self.identity.owner)


def _due_since(message: Message) -> float:
    """When the message became due: its send time if it was scheduled, else its acceptance."""
    return (message.send_at or message.created_at).timestamp()


def _describe(exc: UpstreamError) -> str:
    return f"{exc.code}: {exc}" if exc.code else str(exc)


def _receipt_detail(receipt: Receipt) -> str:
    return f"stat={receipt.status} err={receipt.error}" if receipt.error else receipt.status
