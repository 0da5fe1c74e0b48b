"""One `Store` over two SQL dialects: the engine-neutral half of both engines.

Every store operation here is a *flow*: a generator that yields the statements it needs
(`Fetch`, `FetchOne`, `Execute`, `ExecuteMany`) and gets each one's rows back. The flow holds
the meaning — which rows change, which history event and discard record each change
writes, how a replay job is read, changed and written back, how a page of discards is cut,
how migrations are applied — and `DialectStore` runs it in one transaction on whatever
connection the engine gives it. An engine (`sqlite.py`, `postgres.py`) supplies only its
SQL (placeholders, array membership, time values, the set-based statements of its fast
paths) and its connection handling: SQLite drives a flow synchronously inside one group
commit on its writer thread; PostgreSQL drives it with `await` on a pooled connection.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Collection, Generator, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from tiergate.domain.webhooks import REASON_EXPIRED, REASON_RECEIPT_TIMEOUT, DeliveryState
from tiergate.store import _common as c
from tiergate.store import _lifecycle as lc
from tiergate.store.base import (
    ClaimOutcome,
    Discard,
    DiscardFilter,
    DiscardGroup,
    DiscardPage,
    Message,
    MessageFate,
    MessageState,
    MessageView,
    NewReplayJob,
    NotFound,
    QueueStats,
    ReceiptUpdate,
    ReplayJob,
    ReplayState,
    Store,
    Submitted,
    WebhookBacklog,
    WebhookEvent,
    WebhookResult,
    WorkerIdentity,
    WorkerOutcome,
)
from tiergate.store.ids import new_id, new_ids

T = TypeVar("T")


class Fetch(NamedTuple):
    """Run a statement; the flow gets its rows."""

    sql: str
    args: Sequence[Any] = ()


class FetchOne(NamedTuple):
    """Run a statement; the flow gets its first row or None."""

    sql: str
    args: Sequence[Any] = ()


class Execute(NamedTuple):
    """Run a statement; the flow gets the number of rows it changed."""

    sql: str
    args: Sequence[Any] = ()


class ExecuteMany(NamedTuple):
    """Run a statement once per row of arguments."""

    sql: str
    rows: Sequence[Sequence[Any]]


Op = Fetch | FetchOne | Execute | ExecuteMany
Flow = Generator[Op, Any, T]

_COLS = ", ".join(c.MESSAGE_COLUMNS)
_DCOLS = ", ".join(c.DISCARD_COLUMNS)
_JCOLS = ", ".join(c.JOB_COLUMNS)
_WCOLS = ", ".join(c.WEBHOOK_COLUMNS)
IN_FLIGHT = MessageState.IN_FLIGHT.value
_PENDING = DeliveryState.PENDING.value


class Binder:
    """Collects a statement's parameters and writes their placeholders."""

    def __init__(self, numbered: bool) -> None:
        self.values: list[Any] = []
        self._numbered = numbered

    def __call__(self, value: Any) -> str:
        """The placeholder of one more parameter."""
        self.values.append(value)
        return f"${len(self.values)}" if self._numbered else "?"

    def isin(self, column: str, values: Sequence[Any]) -> str:
        """``column`` is one of ``values`` (text)."""
        if self._numbered:
            return f"{column} = ANY({self(list(values))}::text[])"
        if not values:
            return "1 = 0"
        return f"{column} IN ({', '.join(self(v) for v in values)})"


def drive_sync(run: Callable[[Op], Any], flow: Flow[T]) -> T:
    """Run a flow with a synchronous statement runner."""
    try:
        op = next(flow)
        while True:
            op = flow.send(run(op))
    except StopIteration as stop:
        result: T = stop.value
        return result


async def drive_async(run: Callable[[Op], Awaitable[Any]], flow: Flow[T]) -> T:
    """Run a flow with an asynchronous statement runner."""
    try:
        op = next(flow)
        while True:
            op = flow.send(await run(op))
    except StopIteration as stop:
        result: T = stop.value
        return result


class DialectStore(Store):
    """`Store` written once over the statements of one SQL dialect."""

    _clock: c.Clock
    numbered: bool  # `$1` placeholders and arrays (PostgreSQL) or `?` (SQLite)
    for_update: str  # the row-lock suffix of a SELECT that is read, changed and written back
    skip_locked: str  # the suffix of a SELECT that picks rows other writers may be taking too
    greatest: str  # the larger-of function
    migrations: list[tuple[str, ...]]
    version_time_type: str
    json_text: str  # `{column}` and `{key}` in the expression of a JSON object's text field

    # --- what an engine supplies ------------------------------------------------------------

    @abc.abstractmethod
    def time_param(self, epoch: float) -> Any:
        """A time as this engine stores it."""

    @abc.abstractmethod
    def time_in(self, value: Any) -> datetime | None:
        """A stored time as an aware datetime."""

    @abc.abstractmethod
    async def run_write(self, flow: Flow[T]) -> T:
        """Run a flow in a write transaction."""

    @abc.abstractmethod
    async def run_read(self, flow: Flow[T]) -> T:
        """Run a flow that only reads."""

    @abc.abstractmethod
    def apply_transition(
        self, t: lc.Transition, group: list[tuple[int, WorkerOutcome]], now: float
    ) -> Flow[list[tuple[int, Any]]]:
        """Apply one kind of outcome to the messages still leased by their callers.

        Answers (index, row) for each applied one; the row holds ``t.returning``.
        """

    @abc.abstractmethod
    def apply_receipts(
        self, receipts: list[ReceiptUpdate], now: float, keep: bool
    ) -> Flow[list[Message | None]]:
        """Move submitted messages to their receipt's state; keep early receipts if `keep`."""

    @abc.abstractmethod
    def insert_events(self, events: Sequence[lc.Event], now: float) -> Op:
        """The statement that writes history events at `now`."""

    def lock_upstream_ids(self, upstream_ids: Sequence[str]) -> Flow[None]:
        """Serialize a submit and a receipt for the same upstream id (where writers race)."""
        yield from ()

    def migration_lock(self) -> Op | None:
        """A statement that makes concurrent migrators wait for each other, if needed."""
        return None

    def binder(self) -> Binder:
        """A parameter binder for this dialect."""
        return Binder(self.numbered)

    def filters(self) -> c.FilterSQL:
        """The discard filter's SQL for this dialect."""
        return c.FilterSQL(
            (lambda n: f"${n}") if self.numbered else (lambda _: "?"), self.filter_time, self.numbered
        )

    @abc.abstractmethod
    def filter_time(self, value: datetime) -> Any:
        """A filter's datetime as this engine compares it."""

    def message(self, row: Any) -> Message:
        """A row selected with `MESSAGE_COLUMNS` as a `Message`."""
        return c.row_to_message(row, self.time_in)

    def job(self, row: Any) -> ReplayJob:
        """A row selected with `JOB_COLUMNS` as a `ReplayJob`."""
        return c.row_to_job(row, self.time_in)

    # --- migrations -------------------------------------------------------------------------

    def migrate_flow(self) -> Flow[None]:
        """Apply the migrations this database has not seen yet."""
        lock = self.migration_lock()
        if lock is not None:
            yield lock
        yield Execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            f" (version INTEGER PRIMARY KEY, applied_at {self.version_time_type} NOT NULL)"
        )
        row = yield FetchOne("SELECT COALESCE(MAX(version), 0) AS version FROM schema_version")
        for number, script in lc.pending_migrations(int(row["version"]), self.migrations):
            for statement in script:
                yield Execute(statement)
            b = self.binder()
            applied = f"{b(number)}, {b(self.time_param(self._clock()))}"
            yield Execute(f"INSERT INTO schema_version (version, applied_at) VALUES ({applied})", b.values)
            c.log.info("Applied store migration engine=%s version=%d", self.engine, number)

    # --- workers ----------------------------------------------------------------------------

    @abc.abstractmethod
    def lease_statement(
        self, traffic_class: str, worker: WorkerIdentity, limit: int, now: float, expires: float
    ) -> Op:
        """Mark up to `limit` due messages in flight for `worker`, returning `MESSAGE_COLUMNS`."""

    async def lease(
        self,
        traffic_class: str,
        worker: WorkerIdentity,
        limit: int,
        visibility_timeout: float,
    ) -> list[Message]:
        """Lease due queued messages and expired in-flight ones; counts an attempt each."""
        if limit <= 0:
            return []
        return await self.run_write(self._lease(traffic_class, worker, limit, visibility_timeout))

    def _lease(
        self, traffic_class: str, worker: WorkerIdentity, limit: int, timeout: float
    ) -> Flow[list[Message]]:
        now = self._clock()
        rows = yield self.lease_statement(traffic_class, worker, limit, now, now + timeout)
        if rows:
            data = lc.lease_data(worker)
            yield self.insert_events([lc.Event(r["id"], MessageState.IN_FLIGHT, data) for r in rows], now)
        messages = [self.message(row) for row in rows]
        messages.sort(key=lambda m: m.next_attempt_at)
        return messages

    async def complete(self, outcomes: Sequence[WorkerOutcome]) -> list[bool]:
        """Apply worker outcomes in one transaction; False where the lease was lost."""
        if not outcomes:
            return []
        done = await self.run_write(self._complete(list(outcomes)))
        self.counters.stale_acks += done.count(False)
        return done

    def _complete(self, outcomes: list[WorkerOutcome]) -> Flow[list[bool]]:
        now = self._clock()
        done = [False] * len(outcomes)
        events: list[lc.Event] = []
        for t, group in lc.grouped(outcomes):
            submits = [o.upstream_message_id for _, o in group if isinstance(o, Submitted)]
            yield from self.lock_upstream_ids(submits)
            applied = yield from self.apply_transition(t, group, now)
            for i, _ in applied:
                done[i] = True
                events.append(lc.outcome_event(outcomes[i]))
            records = [
                lc.discard_record(did, o, row, self.time_param(now))
                for did, (i, row) in zip(new_ids(len(applied), now), applied, strict=True)
                if isinstance(o := outcomes[i], Discard)
            ]
            if records:
                b = self.binder()
                marks = ", ".join(b(None) for _ in c.DISCARD_COLUMNS)
                yield ExecuteMany(f"INSERT INTO discards ({_DCOLS}) VALUES ({marks})", records)
            upstream = [o.upstream_message_id for i, _ in applied if isinstance(o := outcomes[i], Submitted)]
            if upstream:
                yield from self._apply_pending_receipts(upstream, now)
        if events:
            yield self.insert_events(events, now)
        return done

    def _apply_pending_receipts(self, upstream_ids: list[str], now: float) -> Flow[None]:
        b = self.binder()
        rows = yield Fetch(
            f"DELETE FROM pending_receipts WHERE {b.isin('upstream_message_id', upstream_ids)}"
            " RETURNING upstream_message_id, delivered, detail",
            b.values,
        )
        if rows:
            receipts = [
                ReceiptUpdate(r["upstream_message_id"], bool(r["delivered"]), r["detail"]) for r in rows
            ]
            yield from self.apply_receipts(receipts, now, keep=False)

    async def extend_leases(self, ids: Sequence[str], owner: str, visibility_timeout: float) -> list[bool]:
        """Push the lease expiry of messages still owned by `owner`."""
        if not ids:
            return []
        items = list(ids)
        extended = await self.run_write(self._extend(items, owner, visibility_timeout))
        return [mid in extended for mid in items]

    def _extend(self, ids: list[str], owner: str, timeout: float) -> Flow[set[str]]:
        b = self.binder()
        expires = self.time_param(self._clock() + timeout)
        rows = yield Fetch(
            f"UPDATE messages SET lease_expires_at = {b(expires)}, due_at = {b(expires)}"
            f" WHERE {b.isin('id', ids)} AND lease_owner = {b(owner)} AND state = '{IN_FLIGHT}'"
            " RETURNING id",
            b.values,
        )
        return {r["id"] for r in rows}

    async def record_receipts(self, receipts: Sequence[ReceiptUpdate]) -> list[Message | None]:
        """Apply delivery receipts, keeping early ones for their submit."""
        if not receipts:
            return []
        found = await self.run_write(self._record_receipts(list(receipts)))
        self.counters.orphan_receipts += found.count(None)
        return found

    def _record_receipts(self, receipts: list[ReceiptUpdate]) -> Flow[list[Message | None]]:
        now = self._clock()
        yield from self.lock_upstream_ids([r.upstream_message_id for r in receipts])
        return (yield from self.apply_receipts(receipts, now, keep=True))

    # --- sweeps -----------------------------------------------------------------------------

    async def expire_unreceipted(self, submitted_before: datetime, limit: int = 1000) -> int:
        """Submitted messages older than the cutoff without a receipt become unknown."""
        return await self.run_write(self._expire_unreceipted(submitted_before, limit))

    def _expire_unreceipted(self, cutoff: datetime, limit: int) -> Flow[int]:
        now = self._clock()
        b = self.binder()
        unknown, submitted = MessageState.UNKNOWN.value, MessageState.SUBMITTED.value
        rows = yield Fetch(
            f"UPDATE messages SET state = '{unknown}', last_error = {b(REASON_RECEIPT_TIMEOUT)},"
            f" updated_at = {b(self.time_param(now))} WHERE id IN (SELECT id FROM messages"
            f" WHERE state = '{submitted}' AND submitted_at < {b(self.filter_time(cutoff))}"
            f" ORDER BY submitted_at LIMIT {b(limit)}{self.skip_locked}) RETURNING id",
            b.values,
        )
        if rows:
            data = lc.event_data(lc.EventKind.RECEIPT_TIMEOUT, reason=REASON_RECEIPT_TIMEOUT)
            yield self.insert_events([lc.Event(r["id"], MessageState.UNKNOWN, data) for r in rows], now)
        return len(rows)

    async def expire_queued(self, limit: int = 1000) -> int:
        """Discard queued messages whose validity has ended, with reason ``expired``."""
        return await self.run_write(self._expire_queued(limit))

    def _expire_queued(self, limit: int) -> Flow[int]:
        now = self._clock()
        ts = self.time_param(now)
        b = self.binder()
        rows = yield Fetch(
            f"UPDATE messages SET state = '{MessageState.DISCARDED.value}', last_error = {b(REASON_EXPIRED)},"
            f" due_at = NULL, updated_at = {b(ts)} WHERE id IN (SELECT id FROM messages"
            f" WHERE expires_at <= {b(ts)} AND state = '{MessageState.QUEUED.value}'"
            f" ORDER BY expires_at LIMIT {b(limit)}{self.skip_locked})"
            f" RETURNING id, {', '.join(lc.DISCARD_SOURCE)}",
            b.values,
        )
        if rows:
            discards = [Discard(r["id"], "", REASON_EXPIRED) for r in rows]
            records = [
                lc.discard_record(did, o, row, ts)
                for did, o, row in zip(new_ids(len(rows), now), discards, rows, strict=True)
            ]
            b = self.binder()
            marks = ", ".join(b(None) for _ in c.DISCARD_COLUMNS)
            yield ExecuteMany(f"INSERT INTO discards ({_DCOLS}) VALUES ({marks})", records)
            yield self.insert_events([lc.outcome_event(o) for o in discards], now)
        return len(rows)

    # --- webhooks ---------------------------------------------------------------------------

    async def claim_webhook_events(self, limit: int, lease: float) -> list[WebhookEvent]:
        """Take due pending events, at most one per message (its oldest), for `lease` seconds."""
        return await self.run_write(self._claim_webhooks(limit, lease))

    def _claim_webhooks(self, limit: int, lease: float) -> Flow[list[WebhookEvent]]:
        now = self._clock()
        b = self.binder()
        rows = yield Fetch(
            f"UPDATE webhook_events SET next_attempt_at = {b(self.time_param(now + lease))}"
            f" WHERE seq IN (SELECT e.seq FROM webhook_events e WHERE e.status = '{_PENDING}'"
            f" AND e.next_attempt_at <= {b(self.time_param(now))} AND NOT EXISTS (SELECT 1"
            " FROM webhook_events p WHERE p.message_id = e.message_id"
            f" AND p.status = '{_PENDING}' AND p.seq < e.seq)"
            f" ORDER BY e.next_attempt_at LIMIT {b(limit)}{self.skip_locked}) RETURNING {_WCOLS}",
            b.values,
        )
        return sorted((c.row_to_webhook(r, self.time_in) for r in rows), key=lambda e: e.seq)

    async def record_webhook_results(self, results: Sequence[WebhookResult]) -> None:
        """Settle claimed events: sent, due again at `retry_at`, or failed for good."""
        if results:
            await self.run_write(self._record_webhooks(list(results)))

    def _record_webhooks(self, results: list[WebhookResult]) -> Flow[None]:
        ts = self.time_param(self._clock())
        b = self.binder()
        sets = (
            f"status = {b(None)}, attempts = attempts + 1, last_attempt_at = {b(None)},"
            f" last_status = {b(None)}, last_error = {b(None)},"
            f" next_attempt_at = COALESCE({b(None)}, next_attempt_at), sent_at = {b(None)}"
        )
        yield ExecuteMany(
            f"UPDATE webhook_events SET {sets} WHERE seq = {b(None)} AND status = '{_PENDING}'",
            [
                (
                    c.webhook_status(r).value,
                    ts,
                    r.status_code,
                    r.error,
                    None if r.retry_at is None else self.time_param(r.retry_at.timestamp()),
                    ts if r.sent else None,
                    r.seq,
                )
                for r in results
            ],
        )

    async def webhook_events(self, message_id: str) -> list[WebhookEvent]:
        """A message's events with their delivery attempts, oldest first."""
        return await self.run_read(self._webhook_events(message_id))

    def _webhook_events(self, message_id: str) -> Flow[list[WebhookEvent]]:
        b = self.binder()
        rows = yield Fetch(
            f"SELECT {_WCOLS} FROM webhook_events WHERE message_id = {b(message_id)} ORDER BY seq", b.values
        )
        return [c.row_to_webhook(r, self.time_in) for r in rows]

    async def webhook_backlog(self) -> WebhookBacklog:
        """How many events wait to be sent and the time of the oldest."""
        return await self.run_read(self._webhook_backlog())

    def _webhook_backlog(self) -> Flow[WebhookBacklog]:
        row = yield FetchOne(
            "SELECT COUNT(*) AS pending, MIN(occurred_at) AS oldest FROM webhook_events"
            f" WHERE status = '{_PENDING}'"
        )
        return WebhookBacklog(int(row["pending"]), self.time_in(row["oldest"]))

    # --- reads ------------------------------------------------------------------------------

    async def get(self, id: str) -> MessageView | None:
        """A message with its history, or None."""
        return await self.run_read(self._get(id))

    def _get(self, id: str) -> Flow[MessageView | None]:
        b = self.binder()
        row = yield FetchOne(f"SELECT {_COLS} FROM messages WHERE id = {b(id)}", b.values)
        if row is None:
            return None
        b = self.binder()
        events = yield Fetch(
            f"SELECT at, state, data, detail FROM message_events WHERE message_id = {b(id)} ORDER BY seq",
            b.values,
        )
        return lc.history(self.message(row), events, self.time_in)

    async def queue_stats(self) -> dict[str, QueueStats]:
        """Depth and oldest queued message per traffic class with any queued or in-flight."""
        return await self.run_read(self._queue_stats())

    def _queue_stats(self) -> Flow[dict[str, QueueStats]]:
        queued = MessageState.QUEUED.value
        rows = yield Fetch(
            "SELECT traffic_class,"
            f" SUM(CASE WHEN state = '{queued}' THEN 1 ELSE 0 END) AS queued,"
            f" SUM(CASE WHEN state = '{IN_FLIGHT}' THEN 1 ELSE 0 END) AS in_flight,"
            # A scheduled message counts as waiting from its send time.
            f" MIN(CASE WHEN state = '{queued}' THEN {self.greatest}(created_at,"
            " COALESCE(send_at, created_at)) END) AS oldest"
            " FROM messages WHERE due_at IS NOT NULL GROUP BY traffic_class"
        )
        return {
            r["traffic_class"]: QueueStats(
                r["traffic_class"], int(r["queued"] or 0), int(r["in_flight"] or 0), self.time_in(r["oldest"])
            )
            for r in rows
        }

    async def count_states(self) -> dict[MessageState, int]:
        """How many messages are in each state (states without any are left out)."""
        return await self.run_read(self._count_states())

    def _count_states(self) -> Flow[dict[MessageState, int]]:
        rows = yield Fetch("SELECT state, COUNT(*) AS n FROM messages GROUP BY state")
        return {MessageState(r["state"]): int(r["n"]) for r in rows}

    async def message_fates(self, revisions: Collection[str]) -> list[MessageFate]:
        """Every message's end state and which of `revisions` ever leased it."""
        return await self.run_read(self._message_fates(sorted(revisions)))

    def _message_fates(self, revisions: list[str]) -> Flow[list[MessageFate]]:
        leased_by: dict[str, set[str]] = {}
        if revisions:
            b = self.binder()
            kind = self.json_text.format(column="data", key="event")
            revision = self.json_text.format(column="data", key="revision")
            rows = yield Fetch(
                f"SELECT DISTINCT message_id, {revision} AS revision FROM message_events"
                f" WHERE {kind} = {b(lc.EventKind.LEASED.value)} AND {b.isin(revision, revisions)}",
                b.values,
            )
            for r in rows:
                leased_by.setdefault(r["message_id"], set()).add(r["revision"])
        rows = yield Fetch("SELECT id, state, delivered_at, replay_count FROM messages ORDER BY id")
        return [
            MessageFate(
                r["id"],
                MessageState(r["state"]),
                self.time_in(r["delivered_at"]),
                int(r["replay_count"]),
                frozenset(leased_by.get(r["id"], ())),
            )
            for r in rows
        ]

    # --- discards and replay ----------------------------------------------------------------

    async def list_discards(
        self, filter: DiscardFilter, limit: int = 100, cursor: str | None = None
    ) -> DiscardPage:
        """Discards matching the filter, newest first, paged by an opaque cursor."""
        return await self.run_read(self._list_discards(filter, limit, cursor))

    def _list_discards(self, filter: DiscardFilter, limit: int, cursor: str | None) -> Flow[DiscardPage]:
        b = self.binder()
        where = self.filters().where(filter, b.values)
        if cursor is not None:
            where += f" AND id < {b(lc.decode_cursor(cursor))}"
        rows = yield Fetch(
            f"SELECT {_DCOLS} FROM discards WHERE {where} ORDER BY id DESC LIMIT {b(limit + 1)}", b.values
        )
        items = tuple(c.row_to_discard(row, self.time_in) for row in rows[:limit])
        more = len(rows) > limit and items
        return DiscardPage(items, lc.encode_cursor(items[-1].id) if more else None)

    async def count_discards(self, filter: DiscardFilter, group_by: DiscardGroup) -> dict[str, int]:
        """Count matching discards per value of `group_by` (None values as "")."""
        return await self.run_read(self._count_discards(filter, group_by))

    def _count_discards(self, filter: DiscardFilter, group_by: DiscardGroup) -> Flow[dict[str, int]]:
        column = c.GROUP_COLUMNS[DiscardGroup(group_by)]
        b = self.binder()
        where = self.filters().where(filter, b.values)
        rows = yield Fetch(
            f"SELECT COALESCE({column}, '') AS value, COUNT(*) AS n FROM discards WHERE {where}"
            f" GROUP BY COALESCE({column}, '')",
            b.values,
        )
        return {str(r["value"]): int(r["n"]) for r in rows}

    async def claim_for_replay(self, discard_ids: Sequence[str], job_id: str) -> list[ClaimOutcome]:
        """Re-queue the discarded messages once, for this job only; updates job counters."""
        return await self.run_write(self._claim(list(discard_ids), job_id))

    def _claim(self, ids: list[str], job_id: str) -> Flow[list[ClaimOutcome]]:
        now = self._clock()
        ts = self.time_param(now)
        b = self.binder()
        if (yield FetchOne(f"SELECT 1 FROM replay_jobs WHERE id = {b(job_id)}", b.values)) is None:
            raise NotFound(f"replay job {job_id} not found")
        # Lock order (all discards by id, then all messages by id) rules out deadlocks.
        b = self.binder()
        discards = yield Fetch(
            f"SELECT id, message_id, replay_job_id FROM discards WHERE {b.isin('id', ids)}"
            f" ORDER BY id{self.for_update}",
            b.values,
        )
        b = self.binder()
        mids = sorted({r["message_id"] for r in discards})
        messages = yield Fetch(
            f"SELECT id, state FROM messages WHERE {b.isin('id', mids)} ORDER BY id{self.for_update}",
            b.values,
        )
        outcomes = lc.decide_claims(ids, discards, messages, job_id)
        won = [o for o in outcomes if o.claimed]
        if won:
            b = self.binder()
            yield Execute(
                f"UPDATE discards SET replay_job_id = {b(job_id)}, replayed_at = {b(ts)}"
                f" WHERE {b.isin('id', [o.discard_id for o in won])}",
                b.values,
            )
            claimed = [o.message_id for o in won if o.message_id is not None]
            b = self.binder()
            yield Execute(
                f"UPDATE messages SET state = '{MessageState.QUEUED.value}', attempts = 0,"
                f" next_attempt_at = {b(ts)}, due_at = {b(ts)}, replay_count = replay_count + 1,"
                f" replay_job_id = {b(job_id)}, lease_owner = NULL, lease_expires_at = NULL,"
                f" updated_at = {b(ts)} WHERE {b.isin('id', claimed)}",
                b.values,
            )
            data = lc.replay_data(job_id)
            yield self.insert_events([lc.Event(mid, MessageState.QUEUED, data) for mid in claimed], now)
        replayed, skipped = lc.claim_counts(outcomes)
        b = self.binder()
        yield Execute(
            f"UPDATE replay_jobs SET replayed = replayed + {b(replayed)}, skipped = skipped + {b(skipped)},"
            f" updated_at = {b(ts)} WHERE id = {b(job_id)}",
            b.values,
        )
        return outcomes

    async def create_replay_job(self, job: NewReplayJob) -> ReplayJob:
        """Store a new replay job in state pending."""
        return await self.run_write(self._create_job(job))

    def _create_job(self, job: NewReplayJob) -> Flow[ReplayJob]:
        now = self._clock()
        b = self.binder()
        values = (
            job.id or new_id(now),
            job.filter.to_json(),
            job.rate,
            job.dry_run,
            job.max_age_seconds,
            job.source,
            ReplayState.PENDING.value,
            0,
            0,
            0,
            0,
            None,
            None,
            self.time_param(now),
            self.time_param(now),
        )
        marks = ", ".join(b(v) for v in values)
        row = yield FetchOne(
            f"INSERT INTO replay_jobs ({_JCOLS}) VALUES ({marks}) RETURNING {_JCOLS}", b.values
        )
        return self.job(row)

    async def get_replay_job(self, job_id: str) -> ReplayJob | None:
        """A replay job, or None."""
        return await self.run_read(self._get_job(job_id))

    def _get_job(self, job_id: str, lock: str = "") -> Flow[ReplayJob | None]:
        b = self.binder()
        row = yield FetchOne(f"SELECT {_JCOLS} FROM replay_jobs WHERE id = {b(job_id)}{lock}", b.values)
        return None if row is None else self.job(row)

    async def list_replay_jobs(self, states: Sequence[ReplayState] = (), limit: int = 100) -> list[ReplayJob]:
        """Replay jobs, newest first, optionally only in the given states."""
        return await self.run_read(self._list_jobs(states, limit))

    def _list_jobs(self, states: Sequence[ReplayState], limit: int) -> Flow[list[ReplayJob]]:
        b = self.binder()
        where = f"WHERE {b.isin('state', [s.value for s in states])}" if states else ""
        rows = yield Fetch(
            f"SELECT {_JCOLS} FROM replay_jobs {where} ORDER BY id DESC LIMIT {b(limit)}", b.values
        )
        return [self.job(row) for row in rows]

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
        """Change a job; None if `expected_states` is given and the job is in none of them."""
        return await self.run_write(
            self._update_job(job_id, state, expected_states, matched, add_failed, cursor, error)
        )

    def _update_job(
        self,
        job_id: str,
        state: ReplayState | None,
        expected_states: Sequence[ReplayState],
        matched: int | None,
        add_failed: int,
        cursor: str | None,
        error: str | None,
    ) -> Flow[ReplayJob | None]:
        current = yield from self._get_job(job_id, self.for_update)
        if current is None:
            raise NotFound(f"replay job {job_id} not found")
        changes = lc.job_changes(current, state, expected_states, matched, cursor, error)
        if changes is None:
            return None
        new_state, new_matched, new_cursor, new_error = changes
        b = self.binder()
        row = yield FetchOne(
            f"UPDATE replay_jobs SET state = {b(new_state)}, matched = {b(new_matched)},"
            f" failed = failed + {b(add_failed)}, cursor = {b(new_cursor)}, error = {b(new_error)},"
            f" updated_at = {b(self.time_param(self._clock()))} WHERE id = {b(job_id)} RETURNING {_JCOLS}",
            b.values,
        )
        return self.job(row)


def set_clause(
    t: lc.Transition, column_ref: Callable[[str], str], value: Callable[[lc.Expr], str], greatest: str
) -> str:
    """The SET list of a transition's UPDATE; `value` writes a parameter's reference."""
    parts = [f"state = '{t.state.value}'"]
    for column, expr in t.sets:
        match expr:
            case lc.Null():
                parts.append(f"{column} = NULL")
            case lc.Decremented():
                parts.append(f"{column} = {greatest}({column_ref(column)} - 1, 0)")
            case lc.Coalesce(fields=fields):
                parts.append(f"{column} = COALESCE({', '.join(value(f) for f in fields)})")
            case lc.Now() | lc.Field():
                parts.append(f"{column} = {value(expr)}")
    return ", ".join(parts)


def outcome_value(f: lc.Field, o: WorkerOutcome, time: Callable[[datetime], Any]) -> Any:
    """One outcome attribute as a statement parameter."""
    value = getattr(o, f.name)
    return time(value) if f.time else value
