"""The durable store's contract: records, errors and the abstract `Store`.

The sender API, the tier workers and the replay service talk to the store only through
this module, so the SQLite engine (one node, development) and the PostgreSQL engine
(several replicas) are interchangeable and pass the same test suite.

Errors::

    StoreError
     ├── StoreUnavailable   the database cannot be reached or is locked for too long
     ├── SchemaTooNew       the database was migrated by a newer tiergate
     ├── NotFound           a replay job (or other named record) does not exist
     └── InvalidRequest     the caller asked for something the store refuses (bad URL, filter)

A late acknowledgement from a worker that no longer holds the lease is not an error: the
completion methods answer `False` for it and `Store.stale_acks` counts it.

Times are timezone-aware UTC datetimes in every record.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from tiergate.domain.records import Encoding as Encoding
from tiergate.domain.records import ValidMessage
from tiergate.errors import TiergateError


class StoreError(TiergateError):
    """Base class of every error raised by a store."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or stayed locked past the busy timeout."""


class SchemaTooNew(StoreError):
    """The database schema is newer than this code understands."""


class NotFound(StoreError):
    """A named record does not exist."""


class InvalidRequest(StoreError):
    """The request cannot be served as asked (bad URL, bad filter, bad argument)."""


class MessageState(StrEnum):
    """Where a message is in its life."""

    QUEUED = "queued"
    IN_FLIGHT = "in_flight"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"
    DISCARDED = "discarded"
    UNKNOWN = "unknown"  # submitted, and no receipt came within the receipt timeout


class ReplayState(StrEnum):
    """Life of a replay job."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"
    FAILED = "failed"


class DiscardGroup(StrEnum):
    """Dimensions `Store.count_discards` can group by."""

    REASON = "reason"
    TIER = "tier"
    CUSTOMER = "customer"
    REVISION = "revision"
    TRAFFIC_CLASS = "traffic_class"


class SkipReason(StrEnum):
    """Why `Store.claim_for_replay` did not re-queue a discard."""

    NOT_FOUND = "not_found"
    ALREADY_DELIVERED = "already_delivered"
    ALREADY_REPLAYED = "already_replayed"
    CLAIMED_BY_THIS_JOB = "claimed_by_this_job"


# What the API hands to `Store.enqueue`: the domain's validated message, as it is.
NewMessage = ValidMessage


class EnqueueResult(NamedTuple):
    """The id of an enqueued message and whether this call created it (a tuple: one per message)."""

    id: str
    created: bool


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    """Who leases: a unique owner id plus the tier and revision of its pod."""

    owner: str
    tier: str
    revision: str


class Message(NamedTuple):
    """A stored message with its delivery state (a tuple: workers read thousands a second)."""

    id: str
    customer_id: str
    traffic_class: str
    destination: str
    sender_id: str
    body: str
    encoding: Encoding
    segments: int
    client_ref: str | None
    idempotency_key: str | None
    state: MessageState
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    delivered_at: datetime | None
    upstream_message_id: str | None
    last_error: str | None
    tier: str | None
    revision: str | None
    replay_count: int
    replay_job_id: str | None
    callback_url: str | None = None
    expires_at: datetime | None = None
    send_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One state transition of a message: its detail as a sentence and as data."""

    at: datetime
    state: MessageState
    detail: str | None = None
    data: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message and its history, oldest transition first, for `GET /v1/messages/{id}`."""

    message: Message
    history: tuple[HistoryEntry, ...]


@dataclass(frozen=True, slots=True)
class MessageFate:
    """Where a message ended up, and which of the asked-about revisions ever leased it."""

    id: str
    state: MessageState
    delivered_at: datetime | None
    replay_count: int
    leased_by: frozenset[str]


@dataclass(frozen=True, slots=True)
class Submitted:
    """Outcome: upstream accepted the message under `upstream_message_id`."""

    id: str
    owner: str
    upstream_message_id: str


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Outcome: a transient failure; lease again no earlier than `not_before`."""

    id: str
    owner: str
    not_before: datetime
    error: str


@dataclass(frozen=True, slots=True)
class Discard:
    """Outcome: give up; writes a discard event with the tier and revision of the lease."""

    id: str
    owner: str
    reason: str
    upstream_error: str | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """Outcome: hand the message back unsent (graceful shutdown); the attempt is not counted."""

    id: str
    owner: str


WorkerOutcome = Submitted | RetryLater | Discard | Release


@dataclass(frozen=True, slots=True)
class ReceiptUpdate:
    """A delivery receipt as the store applies it (the connector's `Receipt`, reduced to what is kept)."""

    upstream_message_id: str
    delivered: bool
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Depth and age of one traffic class's queue."""

    traffic_class: str
    queued: int
    in_flight: int
    oldest_queued_at: datetime | None

    @property
    def depth(self) -> int:
        """Messages not yet handed upstream: queued plus in flight."""
        return self.queued + self.in_flight


@dataclass(frozen=True, slots=True)
class DiscardEvent:
    """A worker gave up on a message; the record replay works from."""

    id: str
    message_id: str
    customer_id: str
    traffic_class: str
    tier: str | None
    revision: str | None
    reason: str
    upstream_error: str | None
    attempts: int
    discarded_at: datetime
    message_created_at: datetime
    replay_job_id: str | None
    replayed_at: datetime | None


@dataclass(frozen=True, slots=True)
class DiscardFilter:
    """Which discards to select; empty tuples and None mean no constraint."""

    since: datetime | None = None
    until: datetime | None = None
    customer_ids: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    revisions: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    traffic_classes: tuple[str, ...] = ()
    replayed: bool | None = None
    message_created_since: datetime | None = None

    def to_json(self) -> str:
        """Serialize for storage in a replay job."""
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            data[name] = value
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DiscardFilter:
        """Parse what `to_json` wrote."""
        data = json.loads(text)
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if name in ("since", "until", "message_created_since") and value is not None:
                kwargs[name] = datetime.fromisoformat(value)
            elif isinstance(value, list):
                kwargs[name] = tuple(value)
            else:
                kwargs[name] = value
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class DiscardPage:
    """One page of discards, newest first; `next_cursor` is None on the last page."""

    items: tuple[DiscardEvent, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """What `Store.claim_for_replay` did with one discard."""

    discard_id: str
    message_id: str | None
    claimed: bool
    skip_reason: SkipReason | None = None


@dataclass(frozen=True, slots=True)
class NewReplayJob:
    """A replay job to create."""

    filter: DiscardFilter
    rate: float | None = None
    dry_run: bool = False
    max_age_seconds: float | None = None
    source: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ReplayJob:
    """A stored replay job; counters are updated by `claim_for_replay` atomically."""

    id: str
    filter: DiscardFilter
    rate: float | None
    dry_run: bool
    max_age_seconds: float | None
    source: str | None
    state: ReplayState
    matched: int
    replayed: int
    skipped: int
    failed: int
    cursor: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One outbox row: a state change to post to a callback URL, and how posting it went."""

    seq: int
    message_id: str
    customer_id: str
    callback_url: str
    client_ref: str | None
    state: str
    reason: str | None
    upstream_message_id: str | None
    occurred_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """How one post of an event went: sent, or tried again at `retry_at` (None: give up)."""

    seq: int
    sent: bool
    status_code: int | None = None
    error: str | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WebhookBacklog:
    """Events not yet sent, and when the oldest of them happened."""

    pending: int
    oldest_pending_at: datetime | None


@dataclass(slots=True)
class StoreCounters:
    """Process-local counters a store keeps for metrics."""

    stale_acks: int = 0
    group_commits: int = 0
    grouped_requests: int = 0
    orphan_receipts: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Store(abc.ABC):
    """The durable queue, message history, discard log and replay jobs."""

    counters: StoreCounters

    @property
    def stale_acks(self) -> int:
        """Completions refused because the caller no longer held the lease."""
        return self.counters.stale_acks

    @property
    @abc.abstractmethod
    def engine(self) -> str:
        """`sqlite` or `postgresql`."""

    # --- lifecycle -------------------------------------------------------------------

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the database answers a query."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush pending group commits and release connections."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- ingest ----------------------------------------------------------------------

    @abc.abstractmethod
    async def enqueue(self, batch: Sequence[NewMessage]) -> list[EnqueueResult]:
        """Durably store a batch (all or nothing); answers after the commit, in order.

        A message whose (customer_id, idempotency_key) already exists is not stored again:
        its result carries the existing id and `created=False`.
        """

    # --- workers ---------------------------------------------------------------------

    @abc.abstractmethod
    async def lease(
        self,
        traffic_class: str,
        worker: WorkerIdentity,
        limit: int,
        visibility_timeout: float,
    ) -> list[Message]:
        """Lease due queued messages and expired in-flight ones; counts an attempt each."""

    @abc.abstractmethod
    async def complete(self, outcomes: Sequence[WorkerOutcome]) -> list[bool]:
        """Apply worker outcomes in one transaction; False where the lease was lost."""

    async def mark_submitted(self, id: str, owner: str, upstream_message_id: str) -> bool:
        """Record that upstream accepted the message."""
        return (await self.complete([Submitted(id, owner, upstream_message_id)]))[0]

    async def retry_later(self, id: str, owner: str, not_before: datetime, error: str) -> bool:
        """Put the message back in the queue, due at `not_before`."""
        return (await self.complete([RetryLater(id, owner, not_before, error)]))[0]

    async def discard(self, id: str, owner: str, reason: str, upstream_error: str | None = None) -> bool:
        """Give up on the message and write its discard event atomically."""
        return (await self.complete([Discard(id, owner, reason, upstream_error)]))[0]

    async def release(self, id: str, owner: str) -> bool:
        """Hand a leased message back without counting the attempt."""
        return (await self.complete([Release(id, owner)]))[0]

    @abc.abstractmethod
    async def extend_leases(self, ids: Sequence[str], owner: str, visibility_timeout: float) -> list[bool]:
        """Push the lease expiry of messages still owned by `owner`."""

    @abc.abstractmethod
    async def record_receipts(self, receipts: Sequence[ReceiptUpdate]) -> list[Message | None]:
        """Apply delivery receipts; None where no message has that upstream id yet.

        A receipt that arrives before its submit is recorded is kept and applied when
        the submit is recorded (counted in `counters.orphan_receipts` meanwhile).
        """

    async def record_receipt(
        self, upstream_message_id: str, delivered: bool, detail: str | None = None
    ) -> Message | None:
        """Apply one delivery receipt."""
        return (await self.record_receipts([ReceiptUpdate(upstream_message_id, delivered, detail)]))[0]

    @abc.abstractmethod
    async def expire_unreceipted(self, submitted_before: datetime, limit: int = 1000) -> int:
        """Move messages submitted before the cutoff, still without a receipt, to `UNKNOWN`.

        Returns how many moved; safe to run from several processes at once (each message
        moves once). A receipt that comes later still moves an unknown message on.
        """

    @abc.abstractmethod
    async def expire_queued(self, limit: int = 1000) -> int:
        """Discard queued messages whose validity has ended, with reason ``expired``."""

    # --- webhooks --------------------------------------------------------------------

    @abc.abstractmethod
    async def claim_webhook_events(self, limit: int, lease: float) -> list[WebhookEvent]:
        """Take due pending events, at most one per message (its oldest), for `lease` seconds.

        A message's next event is not handed out while an earlier one is pending, so each
        message's events go out in order; an event not settled within the lease is due again.
        """

    @abc.abstractmethod
    async def record_webhook_results(self, results: Sequence[WebhookResult]) -> None:
        """Settle claimed events: sent, due again at `retry_at`, or failed for good."""

    @abc.abstractmethod
    async def webhook_events(self, message_id: str) -> list[WebhookEvent]:
        """A message's events with their delivery attempts, oldest first."""

    @abc.abstractmethod
    async def webhook_backlog(self) -> WebhookBacklog:
        """How many events wait to be sent and the time of the oldest."""

    # --- reads -----------------------------------------------------------------------

    @abc.abstractmethod
    async def get(self, id: str) -> MessageView | None:
        """A message with its history, or None."""

    @abc.abstractmethod
    async def queue_stats(self) -> dict[str, QueueStats]:
        """Depth and oldest queued message per traffic class with any queued or in-flight."""

    @abc.abstractmethod
    async def count_states(self) -> dict[MessageState, int]:
        """How many messages are in each state (states without any are left out)."""

    @abc.abstractmethod
    async def message_fates(self, revisions: Collection[str]) -> list[MessageFate]:
        """Every message's end state and which of `revisions` ever leased it (a bulk read
        for audits such as the drill: it reads the whole table)."""

    # --- discards and replay ---------------------------------------------------------

    @abc.abstractmethod
    async def list_discards(
        self, filter: DiscardFilter, limit: int = 100, cursor: str | None = None
    ) -> DiscardPage:
        """Discards matching the filter, newest first, paged by an opaque cursor."""

    @abc.abstractmethod
    async def count_discards(self, filter: DiscardFilter, group_by: DiscardGroup) -> dict[str, int]:
        """Count matching discards per value of `group_by` (None values as "")."""

    @abc.abstractmethod
    async def claim_for_replay(self, discard_ids: Sequence[str], job_id: str) -> list[ClaimOutcome]:
        """Re-queue the discarded messages once, for this job only; updates job counters.

        A discard is claimed only if its message is still discarded and no job claimed the
        discard before; the message keeps its id and idempotency key, its attempts are
        reset and its replay count goes up. Raises `NotFound` for an unknown job.
        """

    @abc.abstractmethod
    async def create_replay_job(self, job: NewReplayJob) -> ReplayJob:
        """Store a new replay job in state pending."""

    @abc.abstractmethod
    async def get_replay_job(self, job_id: str) -> ReplayJob | None:
        """A replay job, or None."""

    @abc.abstractmethod
    async def list_replay_jobs(self, states: Sequence[ReplayState] = (), limit: int = 100) -> list[ReplayJob]:
        """Replay jobs, newest first, optionally only in the given states."""

    @abc.abstractmethod
    async def update_replay_job(
        self,
        job_id: str,
        *,
        state: ReplayState | None = None,
        expected_states: Sequence[ReplayState] = (),
        matched: int | None = None,
        add_failed: int = 0,
        cursor: str | None = None,
        error: str | None = None,
    ) -> ReplayJob | None:
        """Change a job; None if `expected_states` is given and the job is in none of them.

        Raises `NotFound` for an unknown job.
        """
