"""The webhook dispatcher and the sweeper that end messages nobody else will.

Both run inside the ingest API processes, not the tier workers: the API is up whenever
messages are accepted, while a tier's workers are exactly what a bad release takes down
(a halted tier is when customers most need to hear what happened), and the customers'
secrets already sit with the API's customer configuration. Several API processes or
replicas may run them at once: claims and sweeps are atomic in the store.

The dispatcher takes due outbox events (at most one per message, so each message's events
go out in order), groups them by customer and callback URL, POSTs each group as one signed
``{"events": [...]}`` request, and settles every event: sent on a 2xx, else due again on the
retry schedule until its window is over (then failed). A dispatcher killed mid-request
leaves its events claimed until the claim lapses; they are then sent again (at least once).

The sweeper moves messages submitted longer ago than the receipt timeout to ``unknown`` and
discards queued messages whose validity ended (``expired``); the store writes their webhook
events in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import orjson

from tiergate.domain.webhooks import SIGNATURE_HEADER, Event, event_type, signature_header
from tiergate.sender import metrics
from tiergate.sender.settings import WebhookSettings
from tiergate.store import Store, WebhookEvent, WebhookResult

log = logging.getLogger(__name__)

BACKLOG_INTERVAL = 2.0
SWEEP_BATCH = 1000
ROUNDS_IN_FLIGHT = 2
MAX_IDLE_POLL = 0.5


def event_of(row: WebhookEvent) -> Event:
    """The posted form of an outbox row."""
    return Event(
        id=f"ev_{row.seq}",
        type=event_type(row.state, row.reason),
        message_id=row.message_id,
        customer_id=row.customer_id,
        occurred_at=row.occurred_at.isoformat(),
        state=row.state,
        reason=row.reason,
        client_ref=row.client_ref,
        upstream_message_id=row.upstream_message_id,
    )


def requests_of(rows: Sequence[WebhookEvent], batch: int) -> list[list[WebhookEvent]]:
    """Rows grouped by customer and URL, in chunks of at most `batch`, oldest first."""
    groups: dict[tuple[str, str], list[WebhookEvent]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.seq):
        groups[(row.customer_id, row.callback_url)].append(row)
    return [group[i : i + batch] for group in groups.values() for i in range(0, len(group), batch)]


class Dispatcher:
    """Delivers the outbox's events to the customers' callback URLs."""

    def __init__(
        self,
        store: Store,
        settings: WebhookSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._clock = clock
        self._rng = random.Random(seed)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=settings.timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=settings.concurrency * ROUNDS_IN_FLIGHT),
            headers={"user-agent": "tiergate-webhooks"},
        )
        self._slots = asyncio.Semaphore(settings.concurrency * ROUNDS_IN_FLIGHT)
        self._sent = metrics.WEBHOOK_EVENTS.labels(result="sent")
        self._failed = metrics.WEBHOOK_EVENTS.labels(result="failed")
        self._posts_ok = metrics.WEBHOOK_POSTS.labels(result="ok")
        self._posts_error = metrics.WEBHOOK_POSTS.labels(result="error")

    @property
    def lease(self) -> float:
        """How long a claim holds: a round's requests (one wave, each within the timeout) and its
        two store writes; an event whose claim lapses mid-round is sent again, never lost."""
        return 3 * self.settings.timeout

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until `stop` is set."""
        tasks = [
            asyncio.create_task(self._rounds(stop), name=f"webhook-rounds-{i}")
            for i in range(ROUNDS_IN_FLIGHT)
        ]
        tasks.append(asyncio.create_task(self._backlog(stop), name="webhook-backlog"))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self._own_client:
                await self._client.aclose()

    async def _rounds(self, stop: asyncio.Event) -> None:
        idle = 0.01
        while not stop.is_set():
            try:
                handled = await self.run_once()
            except Exception as exc:
                log.warning("Webhook round failed error=%r", exc)
                handled = 0
                idle = 1.0
            if handled:
                idle = 0.01
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), idle)
            idle = min(MAX_IDLE_POLL, idle * 2)

    async def run_once(self) -> int:
        """One round: claim due events, post them, settle them; how many were claimed."""
        s = self.settings
        rows = await self.store.claim_webhook_events(s.concurrency * s.batch, self.lease)
        if not rows:
            return 0
        outcomes = await asyncio.gather(*(self._post(group) for group in requests_of(rows, s.batch)))
        results = [r for group in outcomes for r in group]
        await self.store.record_webhook_results(results)
        for r in results:
            if r.sent:
                self._sent.inc()
            elif r.retry_at is None:
                self._failed.inc()
        return len(rows)

    async def _post(self, rows: list[WebhookEvent]) -> list[WebhookResult]:
        first = rows[0]
        hook = self.settings.customers.get(first.customer_id)
        if hook is None or not hook.secrets:
            return self._retry(rows, None, "no webhook secret configured for the customer")
        body = orjson.dumps({"events": [event_of(r).as_dict() for r in rows]})
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: signature_header(hook.secrets, int(self._clock()), body),
        }
        async with self._slots:
            try:
                response = await self._client.post(first.callback_url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                self._posts_error.inc()
                return self._retry(rows, None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= response.status_code < 300:
            self._posts_ok.inc()
            return [WebhookResult(r.seq, True, response.status_code) for r in rows]
        self._posts_error.inc()
        return self._retry(rows, response.status_code, f"HTTP {response.status_code}")

    def _retry(self, rows: list[WebhookEvent], status: int | None, error: str) -> list[WebhookResult]:
        now = self._clock()
        results = []
        given_up = 0
        for r in rows:
            at = self.settings.schedule.next_attempt(
                r.attempts + 1, r.occurred_at.timestamp(), now, self._rng
            )
            given_up += at is None
            retry_at = None if at is None else datetime.fromtimestamp(at, UTC)
            results.append(WebhookResult(r.seq, False, status, error, retry_at))
        log.warning(
            "Webhook not delivered customer=%s host=%s events=%d error=%s given_up=%d",
            rows[0].customer_id,
            urlsplit(rows[0].callback_url).hostname,
            len(rows),
            error,
            given_up,
        )
        return results

    async def _backlog(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                backlog = await self.store.webhook_backlog()
            except Exception as exc:
                log.warning("Webhook backlog unavailable error=%r", exc)
            else:
                metrics.WEBHOOK_PENDING.set(backlog.pending)
                oldest = backlog.oldest_pending_at
                age = max(0.0, self._clock() - oldest.timestamp()) if oldest else 0.0
                metrics.WEBHOOK_OLDEST_PENDING_AGE.set(age)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), BACKLOG_INTERVAL)


class Sweeper:
    """Ends submitted messages whose receipt never came, and queued ones past their validity."""

    def __init__(self, store: Store, settings: WebhookSettings, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.settings = settings
        self._clock = clock

    async def sweep(self) -> tuple[int, int]:
        """One pass over both; (messages made unknown, messages expired)."""
        cutoff = datetime.fromtimestamp(self._clock(), UTC) - timedelta(seconds=self.settings.receipt_timeout)
        unknown = expired = 0
        while True:
            moved = await self.store.expire_unreceipted(cutoff, SWEEP_BATCH)
            unknown += moved
            if moved < SWEEP_BATCH:
                break
        while True:
            moved = await self.store.expire_queued(SWEEP_BATCH)
            expired += moved
            if moved < SWEEP_BATCH:
                break
        if unknown:
            metrics.RECEIPT_TIMEOUTS.inc(unknown)
            log.warning(
                "Receipts timed out count=%d receipt_timeout=%gs", unknown, self.settings.receipt_timeout
            )
        if expired:
            metrics.EXPIRED.inc(expired)
            log.info("Queued messages expired count=%d", expired)
        return unknown, expired

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every `sweep_interval` until `stop` is set."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("Sweep failed error=%r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.sweep_interval)
