"""Pieces both engines share: column lists, row mapping, filter SQL and group commit.

Group commit is what makes full-durability ingest fast: every write request (an enqueue
batch, a lease, a set of outcomes) joins a queue; one writer task runs everything queued
so far in a single transaction, one savepoint per request, and answers each caller only
after that transaction committed. Under load a commit (one fsync) carries hundreds of
requests; with one request in flight it costs what a plain transaction costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from tiergate.domain.webhooks import DeliveryState
from tiergate.store.base import (
    DiscardEvent,
    DiscardFilter,
    DiscardGroup,
    Encoding,
    Message,
    MessageState,
    ReplayJob,
    ReplayState,
    WebhookEvent,
    WebhookResult,
)

log = logging.getLogger("tiergate.store")

# Columns are named as the record fields they fill, so a record's fields are its SELECT list.
MESSAGE_COLUMNS: tuple[str, ...] = Message._fields
DISCARD_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DiscardEvent))
JOB_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ReplayJob))
WEBHOOK_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(WebhookEvent))


def _positions(columns: tuple[str, ...], *names: str) -> tuple[int, ...]:
    return tuple(columns.index(name) for name in names)


_MESSAGE_TIMES = _positions(
    MESSAGE_COLUMNS,
    "next_attempt_at",
    "lease_expires_at",
    "created_at",
    "updated_at",
    "submitted_at",
    "delivered_at",
    "expires_at",
    "send_at",
)
(_ENCODING, _STATE) = _positions(MESSAGE_COLUMNS, "encoding", "state")
_DISCARD_TIMES = _positions(DISCARD_COLUMNS, "discarded_at", "message_created_at", "replayed_at")
_JOB_FILTER, _JOB_DRY_RUN, _JOB_STATE = _positions(JOB_COLUMNS, "filter", "dry_run", "state")
_JOB_TIMES = _positions(JOB_COLUMNS, "created_at", "updated_at")
_WEBHOOK_TIMES = _positions(WEBHOOK_COLUMNS, "occurred_at", "next_attempt_at", "last_attempt_at", "sent_at")

GROUP_COLUMNS = {
    DiscardGroup.REASON: "reason",
    DiscardGroup.TIER: "tier",
    DiscardGroup.CUSTOMER: "customer_id",
    DiscardGroup.REVISION: "revision",
    DiscardGroup.TRAFFIC_CLASS: "traffic_class",
}

TimeIn = Callable[[Any], datetime | None]
Clock = Callable[[], float]


def from_epoch(value: Any) -> datetime | None:
    """An epoch-seconds column value as an aware UTC datetime."""
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC)


def to_epoch(value: datetime) -> float:
    """An aware datetime as epoch seconds."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return value.timestamp()


_ENCODINGS = {e.value: e for e in Encoding}
_STATES = {s.value: s for s in MessageState}


def row_to_message(row: Iterable[Any], conv: TimeIn) -> Message:
    """Map a row selected with `MESSAGE_COLUMNS` to a `Message`."""
    values = list(row)
    for i in _MESSAGE_TIMES:
        values[i] = conv(values[i])
    values[_ENCODING] = _ENCODINGS[values[_ENCODING]]
    values[_STATE] = _STATES[values[_STATE]]
    return Message._make(values)


def row_to_discard(row: Iterable[Any], conv: TimeIn) -> DiscardEvent:
    """Map a row selected with `DISCARD_COLUMNS` to a `DiscardEvent`."""
    values = list(row)
    for i in _DISCARD_TIMES:
        values[i] = conv(values[i])
    return DiscardEvent(*values)


def row_to_webhook(row: Iterable[Any], conv: TimeIn) -> WebhookEvent:
    """Map a row selected with `WEBHOOK_COLUMNS` to a `WebhookEvent`."""
    values = list(row)
    for i in _WEBHOOK_TIMES:
        values[i] = conv(values[i])
    return WebhookEvent(*values)


def webhook_status(result: WebhookResult) -> DeliveryState:
    """Where an event is after a post: sent, pending another try, or failed for good."""
    if result.sent:
        return DeliveryState.SENT
    return DeliveryState.FAILED if result.retry_at is None else DeliveryState.PENDING


def row_to_job(row: Iterable[Any], conv: TimeIn) -> ReplayJob:
    """Map a row selected with `JOB_COLUMNS` to a `ReplayJob`."""
    values = list(row)
    values[_JOB_FILTER] = DiscardFilter.from_json(values[_JOB_FILTER])
    values[_JOB_DRY_RUN] = bool(values[_JOB_DRY_RUN])
    values[_JOB_STATE] = ReplayState(values[_JOB_STATE])
    for i in _JOB_TIMES:
        values[i] = conv(values[i])
    return ReplayJob(*values)


class FilterSQL:
    """Builds the WHERE clause of a discard filter for one placeholder dialect."""

    def __init__(
        self,
        placeholder: Callable[[int], str],
        time_param: Callable[[datetime], Any],
        arrays: bool,
    ) -> None:
        self._placeholder = placeholder
        self._time = time_param
        self._arrays = arrays

    def where(self, f: DiscardFilter, params: list[Any]) -> str:
        """SQL conditions (joined by AND, "TRUE" when empty) appending to `params`."""
        clauses: list[str] = []

        def add(value: Any) -> str:
            params.append(value)
            return self._placeholder(len(params))

        if f.since is not None:
            clauses.append(f"discarded_at >= {add(self._time(f.since))}")
        if f.until is not None:
            clauses.append(f"discarded_at < {add(self._time(f.until))}")
        if f.message_created_since is not None:
            clauses.append(f"message_created_at >= {add(self._time(f.message_created_since))}")
        for column, values in (
            ("customer_id", f.customer_ids),
            ("tier", f.tiers),
            ("revision", f.revisions),
            ("reason", f.reasons),
            ("traffic_class", f.traffic_classes),
        ):
            if not values:
                continue
            if self._arrays:
                clauses.append(f"{column} = ANY({add(list(values))})")
            else:
                marks = ", ".join(add(v) for v in values)
                clauses.append(f"{column} IN ({marks})")
        if f.replayed is True:
            clauses.append("replay_job_id IS NOT NULL")
        elif f.replayed is False:
            clauses.append("replay_job_id IS NULL")
        return " AND ".join(clauses) if clauses else "1 = 1"


Op = TypeVar("Op")


class GroupCommitter(Generic[Op]):
    """Gathers concurrent write requests into one transaction per round.

    With ``concurrency`` > 1, that many rounds may be in flight at once (each on its own
    connection): while one waits for the database to flush its commit, the next one
    already inserts. Only for an engine that runs transactions side by side.
    """

    def __init__(
        self,
        run_group: Callable[[list[Op]], Awaitable[list[Any]]],
        max_group: int = 2000,
        concurrency: int = 1,
    ) -> None:
        self._run_group = run_group
        self._max_group = max_group
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._closed = False
        self.rounds = 0
        self.requests = 0
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._loop(), name=f"store-group-commit-{i}") for i in range(concurrency)
        ]

    async def submit(self, op: Op) -> Any:
        """Queue `op` and wait until the transaction that ran it committed."""
        if self._closed:
            raise RuntimeError("store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        self._wake.set()
        return await future

    async def _loop(self) -> None:
        while not (self._closed and not self._pending):
            await self._wake.wait()
            if not self._closed:
                self._wake.clear()
            while self._pending:
                group = self._pending[: self._max_group]
                del self._pending[: self._max_group]
                self.rounds += 1
                self.requests += len(group)
                try:
                    results = await self._run_group([op for op, _ in group])
                except BaseException as exc:
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(group, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)

    async def close(self) -> None:
        """Run what is queued, then stop the writer task."""
        self._closed = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks)
