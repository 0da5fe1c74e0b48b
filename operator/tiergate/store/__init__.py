"""The durable store of tiergate: messages, leases, discards and replay jobs.

`open_store(url)` picks the engine from the URL scheme:

- ``sqlite:///abs/path.db`` — the embedded default (WAL, full synchronous commits, group
  commit); several processes on one host may open the same file;
- ``postgresql://user@host:port/db`` — for several replicas (``FOR UPDATE SKIP LOCKED``).

Migrations are applied when a store is opened.
"""

from __future__ import annotations

from tiergate.store._common import Clock
from tiergate.store.base import (
    ClaimOutcome,
    Discard,
    DiscardEvent,
    DiscardFilter,
    DiscardGroup,
    DiscardPage,
    Encoding,
    EnqueueResult,
    HistoryEntry,
    InvalidRequest,
    Message,
    MessageFate,
    MessageState,
    MessageView,
    NewMessage,
    NewReplayJob,
    NotFound,
    QueueStats,
    ReceiptUpdate,
    Release,
    ReplayJob,
    ReplayState,
    RetryLater,
    SchemaTooNew,
    SkipReason,
    Store,
    StoreCounters,
    StoreError,
    StoreUnavailable,
    Submitted,
    WebhookBacklog,
    WebhookEvent,
    WebhookResult,
    WorkerIdentity,
    WorkerOutcome,
)
from tiergate.store.ids import new_id


async def open_store(
    url: str,
    *,
    clock: Clock | None = None,
    busy_timeout: float = 30.0,
    pool_size: int = 10,
) -> Store:
    """Open (and migrate) the store named by `url`; `clock` returns epoch seconds."""
    if url.startswith("sqlite://"):
        from tiergate.store.sqlite import SQLiteStore

        return await SQLiteStore.open(url, clock=clock, busy_timeout=busy_timeout)
    if url.startswith(("postgresql://", "postgres://")):
        from tiergate.store.postgres import PostgresStore

        return await PostgresStore.open(url, clock=clock, busy_timeout=busy_timeout, pool_size=pool_size)
    raise InvalidRequest(f"unsupported store URL scheme: {url.split(':', 1)[0]!r}")


__all__ = [
    "ClaimOutcome",
    "Clock",
    "Discard",
    "DiscardEvent",
    "DiscardFilter",
    "DiscardGroup",
    "DiscardPage",
    "Encoding",
    "EnqueueResult",
    "HistoryEntry",
    "InvalidRequest",
    "Message",
    "MessageFate",
    "MessageState",
    "MessageView",
    "NewMessage",
    "NewReplayJob",
    "NotFound",
    "QueueStats",
    "ReceiptUpdate",
    "Release",
    "ReplayJob",
    "ReplayState",
    "RetryLater",
    "SchemaTooNew",
    "SkipReason",
    "Store",
    "StoreCounters",
    "StoreError",
    "StoreUnavailable",
    "Submitted",
    "WebhookBacklog",
    "WebhookEvent",
    "WebhookResult",
    "WorkerIdentity",
    "WorkerOutcome",
    "new_id",
    "open_store",
]
