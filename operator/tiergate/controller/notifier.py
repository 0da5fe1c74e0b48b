"""The leader's notifier: delivers the notification outbox that reconciles write into status.

It runs beside the reconcile loops, never in them: a reconcile only offers the pending records of
the status it wrote to a bounded queue (a full queue drops the offer; the record stays pending in
status and the next reconcile offers it again), so a receiver that is down slows nothing. Each
delivery reads the tier fresh, posts to every receiver the record is routed to and has not reached,
and marks the receivers that answered 2xx in status, guarded by ``resourceVersion``. A crash
between the post and the mark sends it again with the same id; failures retry with backoff in
memory, and a restarted leader picks every pending record up from status.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tiergate.api.v1alpha1 import NotificationRecord, SenderTierStatus
from tiergate.clients.kube import Kube
from tiergate.clients.receivers import ReceiverClient
from tiergate.controller import metrics
from tiergate.domain.notifications import (
    SECRET_KEY,
    Receiver,
    ReceiverConfigError,
    TierRef,
    parse_receivers,
    post_for,
    routes,
)
from tiergate.domain.webhooks import RetrySchedule
from tiergate.errors import ConflictError, TransientError

log = logging.getLogger("tiergate.notifier")

QUEUE_SIZE = 1000
WORKERS = 2
CONFIG_TTL = 10.0
MARK_TRIES = 5
SCHEDULE = RetrySchedule(base_delay=1.0, max_delay=60.0, retry_for=24 * 3600.0)

Key = tuple[str, str, str]


class Notifier:
    """A bounded queue of (namespace, tier, notification id) and the workers that deliver them."""

    def __init__(
        self,
        kube: Kube,
        client: ReceiverClient,
        secret_namespace: str,
        secret_name: str,
        schedule: RetrySchedule = SCHEDULE,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._kube = kube
        self._client = client
        self._secret = (secret_namespace, secret_name)
        self._schedule = schedule
        self._queue: asyncio.Queue[Key] = asyncio.Queue(maxsize=queue_size)
        self._known: set[Key] = set()
        self._attempts: dict[Key, tuple[int, float]] = {}
        self._config: tuple[float, tuple[Receiver, ...] | None] | None = None
        self._rng = random.Random()
        self._tasks: set[asyncio.Task[None]] = set()

    def offer(self, namespace: str, name: str, records: Sequence[NotificationRecord]) -> None:
        """Queue the pending records of a tier that are not queued yet; never waits."""
        for record in records:
            key = (namespace, name, record.id)
            if not record.pending or key in self._known:
                continue
            try:
                self._queue.put_nowait(key)
            except asyncio.QueueFull:
                log.warning("Notification queue full, will offer again sendertier=%s/%s", namespace, name)
                return
            self._known.add(key)

    async def run(self, workers: int = WORKERS) -> None:
        """Deliver until cancelled."""
        try:
            await asyncio.gather(*(self._work() for _ in range(workers)))
        finally:
            await self._client.close()

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            try:
                await self._deliver(key)
            except (TransientError, ConflictError) as exc:
                self._later(key, str(exc))
            except Exception:
                log.exception("Notification delivery crashed sendertier=%s/%s id=%s", *key)
                self._later(key, "crashed")
            finally:
                self._queue.task_done()

    async def _receivers(self) -> tuple[Receiver, ...] | None:
        """The configured receivers (cached briefly); None while the Secret is missing or broken."""
        now = time.monotonic()
        if self._config is not None and now - self._config[0] < CONFIG_TTL:
            return self._config[1]
        data = await self._kube.read_secret(*self._secret)
        receivers: tuple[Receiver, ...] | None = None
        if data is None or SECRET_KEY not in data:
            log.warning("Notification receivers missing secret=%s/%s key=%s", *self._secret, SECRET_KEY)
        else:
            try:
                receivers = parse_receivers(data[SECRET_KEY])
            except ReceiverConfigError as exc:
                log.error("Notification receivers unreadable secret=%s/%s error=%s", *self._secret, exc)
        self._config = (now, receivers)
        return receivers

    async def _deliver(self, key: Key) -> None:
        namespace, name, nid = key
        obj = await self._kube.get_tier(namespace, name)
        record = _record(obj, nid)
        if obj is None or record is None or not record.pending:
            self._forget(key)
            return
        receivers = await self._receivers()
        if receivers is None:
            self._later(key, "no receivers configured")
            return
        tier = TierRef(namespace, name, str(obj.get("spec", {}).get("fleet", "")))
        targets = routes(receivers, record)
        stamp = int(time.time())
        errors = await asyncio.gather(*(self._client.post(post_for(r, record, tier, stamp)) for r in targets))
        sent = [r.name for r, err in zip(targets, errors, strict=True) if err is None]
        failed = {r.name: err for r, err in zip(targets, errors, strict=True) if err is not None}
        for err in errors:
            metrics.NOTIFICATION_POSTS.labels(record.kind.value, "sent" if err is None else "error").inc()
        if sent or not failed:
            await self._mark(namespace, name, nid, lambda r: r.delivered(sent, not failed, _now()))
            log.info(
                "Notification sent sendertier=%s/%s id=%s kind=%s receivers=%s",
                namespace,
                name,
                nid,
                record.kind.value,
                ",".join(sent) or "-",
            )
        if failed:
            self._later(key, "; ".join(f"{n}: {e}" for n, e in failed.items()))
        else:
            self._forget(key)

    async def _mark(self, namespace: str, name: str, nid: str, change: Any) -> None:
        """Rewrite one outbox record in the tier's status, guarded by ``resourceVersion``."""
        for _ in range(MARK_TRIES):
            obj = await self._kube.get_tier(namespace, name)
            if obj is None:
                return
            status = dict(obj.get("status") or {})
            records = SenderTierStatus.model_validate(status).notifications
            status["notifications"] = [
                (change(r) if r.id == nid else r).model_dump(by_alias=True, exclude_none=True, mode="json")
                for r in records
            ]
            try:
                await self._kube.replace_status(namespace, name, obj["metadata"]["resourceVersion"], status)
            except ConflictError:
                continue
            return
        raise TransientError(f"status of {namespace}/{name} kept changing")

    def _later(self, key: Key, error: str) -> None:
        """Try `key` again after the backoff, or give up once the retry window is over."""
        now = time.time()
        attempts, first = self._attempts.get(key, (0, now))
        attempts += 1
        self._attempts[key] = (attempts, first)
        when = self._schedule.next_attempt(attempts, first, now, self._rng)
        if when is None:
            log.error("Notification given up sendertier=%s/%s id=%s error=%s", *key, error)
            task = asyncio.get_running_loop().create_task(
                self._mark(key[0], key[1], key[2], lambda r: r.given_up(_now()))
            )
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._given_up(t, key))
            return
        log.warning(
            "Notification not delivered, will retry sendertier=%s/%s id=%s attempts=%d in=%.1fs error=%s",
            *key,
            attempts,
            when - now,
            error,
        )
        asyncio.get_running_loop().call_later(when - now, self._requeue, key)

    def _given_up(self, task: asyncio.Task[None], key: Key) -> None:
        self._tasks.discard(task)
        self._forget(key)

    def _requeue(self, key: Key) -> None:
        try:
            self._queue.put_nowait(key)
        except asyncio.QueueFull:
            self._known.discard(key)

    def _forget(self, key: Key) -> None:
        self._known.discard(key)
        self._attempts.pop(key, None)


def _record(obj: dict[str, Any] | None, nid: str) -> NotificationRecord | None:
    if obj is None:
        return None
    status = SenderTierStatus.model_validate(obj.get("status") or {})
    return next((r for r in status.notifications if r.id == nid), None)


def _now() -> datetime:
    return datetime.now(UTC)
