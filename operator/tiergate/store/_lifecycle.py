"""The message life cycle, written once for both engines.

Each worker outcome is a `Transition`: the state it moves a leased message to, the columns
it sets (as small expressions each engine renders in its own SQL), the message columns the
engine must return for what follows (a discard record), and the history event it writes.
History events carry their detail as data (`EventKind` plus fields, stored as JSON); the
sentence `GET /v1/messages/{id}` shows is rendered from that data here, so no module parses
a sentence. Replay claims and replay-job updates are decided here too, from rows the
engines read by column name. Nothing in this module does I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from tiergate.store.base import (
    ClaimOutcome,
    Discard,
    HistoryEntry,
    InvalidRequest,
    Message,
    MessageState,
    MessageView,
    ReceiptUpdate,
    Release,
    ReplayJob,
    ReplayState,
    RetryLater,
    SchemaTooNew,
    SkipReason,
    Submitted,
    WorkerIdentity,
    WorkerOutcome,
)

# --- column expressions a transition assigns -------------------------------------------


class Now:
    """The store clock's time at the write."""


class Null:
    """SQL NULL."""


@dataclass(frozen=True, slots=True)
class Field:
    """An attribute of the outcome; `time` marks a datetime."""

    name: str
    time: bool = False


@dataclass(frozen=True, slots=True)
class Coalesce:
    """The first of the outcome's attributes that is not None."""

    fields: tuple[Field, ...]


@dataclass(frozen=True, slots=True)
class Decremented:
    """The column's value less one, never below zero."""


Expr = Now | Null | Field | Coalesce | Decremented
NOW = Now()
NULL = Null()


class EventKind(StrEnum):
    """What a history event records; the ``event`` field of its data."""

    LEASED = "leased"
    SUBMITTED = "submitted"
    RETRY = "retry"
    DISCARDED = "discarded"
    RELEASED = "released"
    REPLAY = "replay"
    RECEIPT = "receipt"
    RECEIPT_TIMEOUT = "receipt-timeout"


# The sentence each kind of event shows in a message's history (the API's ``detail``).
_DETAIL = {
    EventKind.LEASED: "owner={owner} tier={tier} revision={revision}",
    EventKind.SUBMITTED: "upstream_id={upstream_id}",
    EventKind.RETRY: "retry: {error}",
    EventKind.DISCARDED: "reason={reason}",
    EventKind.RELEASED: "released unsent",
    EventKind.REPLAY: "replay job={job}",
    EventKind.RECEIPT_TIMEOUT: "reason={reason}",
}
# States a delivery receipt moves on: a late receipt still settles a message that timed out.
AWAITING_RECEIPT = f"('{MessageState.SUBMITTED.value}', '{MessageState.UNKNOWN.value}')"
ACCEPTED = "accepted"


class Event(NamedTuple):
    """A history event to insert: message, new state, detail as JSON text."""

    message_id: str
    state: MessageState
    data: str


def event_data(kind: EventKind, **fields: str | None) -> str:
    """An event's detail as the JSON text the ``data`` column holds."""
    return orjson.dumps({"event": kind.value, **fields}).decode()


def lease_data(worker: WorkerIdentity) -> str:
    """The detail of a lease event."""
    return event_data(EventKind.LEASED, owner=worker.owner, tier=worker.tier, revision=worker.revision)


def receipt_state(receipt: ReceiptUpdate) -> MessageState:
    """The final state a delivery receipt moves its submitted message to."""
    return MessageState.DELIVERED if receipt.delivered else MessageState.FAILED


def receipt_error(receipt: ReceiptUpdate) -> str | None:
    """What a receipt writes into ``last_error`` (None keeps the message's)."""
    return None if receipt.delivered else receipt.detail


def receipt_data(detail: str | None) -> str:
    """The detail of a receipt event."""
    return event_data(EventKind.RECEIPT, receipt=detail)


def replay_data(job_id: str) -> str:
    """The detail of a replay re-queue event."""
    return event_data(EventKind.REPLAY, job=job_id)


def parse_data(data: Any) -> dict[str, Any] | None:
    """The data column's value as a dict (SQLite gives text, PostgreSQL a decoded jsonb)."""
    if data is None:
        return None
    if isinstance(data, str | bytes):
        parsed: dict[str, Any] = orjson.loads(data)
        return parsed
    return dict(data)


def render_detail(data: Mapping[str, Any]) -> str | None:
    """The sentence of an event's data."""
    kind = EventKind(data["event"])
    if kind is EventKind.RECEIPT:
        receipt: str | None = data.get("receipt")
        return receipt
    return _DETAIL[kind].format_map(data)


def history(message: Message, rows: Iterable[Mapping[str, Any]], time_in: Any) -> MessageView:
    """A message's view from its event rows (``at``, ``state``, ``data``, ``detail``)."""
    entries = [HistoryEntry(message.created_at, MessageState.QUEUED, ACCEPTED)]
    for row in rows:
        data = parse_data(row["data"])
        detail = row["detail"] if data is None else render_detail(data)
        entries.append(HistoryEntry(time_in(row["at"]), MessageState(row["state"]), detail, data or {}))
    return MessageView(message, tuple(entries))


# --- outcomes ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    """How one kind of outcome changes the message its caller leased."""

    outcome: type
    state: MessageState
    sets: tuple[tuple[str, Expr], ...]
    returning: tuple[str, ...] = ()

    def fields(self) -> tuple[Field, ...]:
        """The outcome attributes the SQL takes as parameters, each once, in order."""
        seen: dict[str, Field] = {}
        for _, expr in self.sets:
            for f in (
                expr.fields if isinstance(expr, Coalesce) else (expr,) if isinstance(expr, Field) else ()
            ):
                seen.setdefault(f.name, f)
        return tuple(seen.values())


_UNLEASED = (("lease_owner", NULL), ("lease_expires_at", NULL), ("updated_at", NOW))
# Message columns a discard record copies.
DISCARD_SOURCE = ("customer_id", "traffic_class", "tier", "revision", "attempts", "created_at")

TRANSITIONS: tuple[Transition, ...] = (
    Transition(
        Submitted,
        MessageState.SUBMITTED,
        (
            ("submitted_at", NOW),
            ("upstream_message_id", Field("upstream_message_id")),
            ("due_at", NULL),
            *_UNLEASED,
        ),
    ),
    Transition(
        RetryLater,
        MessageState.QUEUED,
        (
            ("next_attempt_at", Field("not_before", time=True)),
            ("due_at", Field("not_before", time=True)),
            ("last_error", Field("error")),
            *_UNLEASED,
        ),
    ),
    Transition(
        Discard,
        MessageState.DISCARDED,
        (
            ("last_error", Coalesce((Field("upstream_error"), Field("reason")))),
            ("due_at", NULL),
            *_UNLEASED,
        ),
        returning=DISCARD_SOURCE,
    ),
    Transition(
        Release,
        MessageState.QUEUED,
        (("attempts", Decremented()), ("next_attempt_at", NOW), ("due_at", NOW), *_UNLEASED),
    ),
)
_BY_OUTCOME = {t.outcome: t for t in TRANSITIONS}


def grouped(outcomes: Sequence[WorkerOutcome]) -> list[tuple[Transition, list[tuple[int, WorkerOutcome]]]]:
    """Outcomes (with their index) grouped by transition, in the order of `TRANSITIONS`."""
    groups: dict[type, list[tuple[int, WorkerOutcome]]] = {}
    for i, o in enumerate(outcomes):
        groups.setdefault(type(o), []).append((i, o))
    return [(t, groups[t.outcome]) for t in TRANSITIONS if t.outcome in groups]


def outcome_event(o: WorkerOutcome) -> Event:
    """The history event an applied outcome writes."""
    match o:
        case Submitted():
            data = event_data(EventKind.SUBMITTED, upstream_id=o.upstream_message_id)
        case RetryLater():
            data = event_data(EventKind.RETRY, error=o.error)
        case Discard():
            data = event_data(EventKind.DISCARDED, reason=o.reason)
        case Release():
            data = event_data(EventKind.RELEASED)
    return Event(o.id, _BY_OUTCOME[type(o)].state, data)


def discard_record(discard_id: str, o: Discard, row: Mapping[str, Any], now: Any) -> tuple[Any, ...]:
    """A discards row (in `DISCARD_COLUMNS` order) for an applied discard outcome."""
    return (
        discard_id,
        o.id,
        row["customer_id"],
        row["traffic_class"],
        row["tier"],
        row["revision"],
        o.reason,
        o.upstream_error,
        row["attempts"],
        now,
        row["created_at"],
        None,
        None,
    )


# --- replay ------------------------------------------------------------------------------


def decide_claim(discard_id: str, row: Any, job_id: str) -> ClaimOutcome:
    """Whether a discard may be claimed, from (message_id, claimed_by, message state)."""
    if row is None:
        return ClaimOutcome(discard_id, None, False, SkipReason.NOT_FOUND)
    message_id, claimed_by, state = row
    if claimed_by == job_id:
        return ClaimOutcome(discard_id, message_id, False, SkipReason.CLAIMED_BY_THIS_JOB)
    if claimed_by is not None:
        return ClaimOutcome(discard_id, message_id, False, SkipReason.ALREADY_REPLAYED)
    if state is None:
        return ClaimOutcome(discard_id, message_id, False, SkipReason.NOT_FOUND)
    if state in (MessageState.SUBMITTED, MessageState.DELIVERED):
        return ClaimOutcome(discard_id, message_id, False, SkipReason.ALREADY_DELIVERED)
    if state != MessageState.DISCARDED:
        return ClaimOutcome(discard_id, message_id, False, SkipReason.ALREADY_REPLAYED)
    return ClaimOutcome(discard_id, message_id, True)


def decide_claims(
    discard_ids: Sequence[str],
    discards: Iterable[Mapping[str, Any]],
    messages: Iterable[Mapping[str, Any]],
    job_id: str,
) -> list[ClaimOutcome]:
    """Claim decisions for discard rows (``id``, ``message_id``, ``replay_job_id``) and
    message rows (``id``, ``state``); a message is claimed once even if two discards name it."""
    found = {r["id"]: (r["message_id"], r["replay_job_id"]) for r in discards}
    states = {r["id"]: r["state"] for r in messages}
    outcomes: list[ClaimOutcome] = []
    claimed: set[str] = set()
    for did in discard_ids:
        row = None
        if did in found:
            mid, claimed_by = found[did]
            row = (mid, claimed_by, MessageState.QUEUED if mid in claimed else states.get(mid))
        outcome = decide_claim(did, row, job_id)
        if outcome.claimed and outcome.message_id is not None:
            claimed.add(outcome.message_id)
        outcomes.append(outcome)
    return outcomes


def claim_counts(outcomes: list[ClaimOutcome]) -> tuple[int, int]:
    """Replayed and skipped counts for a job's counters."""
    replayed = sum(1 for o in outcomes if o.claimed)
    skipped = sum(1 for o in outcomes if not o.claimed and o.skip_reason != SkipReason.CLAIMED_BY_THIS_JOB)
    return replayed, skipped


def job_changes(
    current: ReplayJob,
    state: ReplayState | None,
    expected_states: Sequence[ReplayState],
    matched: int | None,
    cursor: str | None,
    error: str | None,
) -> tuple[str, int, str | None, str | None] | None:
    """The job's new (state, matched, cursor, error), or None if it is in none of `expected_states`."""
    if expected_states and current.state not in expected_states:
        return None
    return (
        (state or current.state).value,
        current.matched if matched is None else matched,
        current.cursor if cursor is None else cursor,
        current.error if error is None else error,
    )


def encode_cursor(discard_id: str) -> str:
    """An opaque page cursor for the last discard id of a page."""
    return base64.urlsafe_b64encode(discard_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The discard id inside a cursor."""
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError as exc:
        raise InvalidRequest("bad discard cursor") from exc


def pending_migrations(
    version: int, migrations: Sequence[tuple[str, ...]]
) -> list[tuple[int, tuple[str, ...]]]:
    """The numbered migrations after `version`; `SchemaTooNew` if the database is ahead."""
    if version > len(migrations):
        raise SchemaTooNew(f"database schema version {version} is newer than this code ({len(migrations)})")
    return [(n, script) for n, script in enumerate(migrations, start=1) if n > version]
