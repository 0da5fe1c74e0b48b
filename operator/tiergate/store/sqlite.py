"""The SQLite engine: the embedded default for one node and for development.

One connection per store object lives in its own thread (the standard-library driver,
driven through a one-thread executor, so a whole transaction is one hop). The database is
in WAL mode with ``synchronous=FULL``: a commit is on disk before any caller is answered.
Writes go through group commit (`_common.GroupCommitter`); leases run in an IMMEDIATE
transaction with an atomic ``UPDATE … RETURNING``, so several processes that open the same
file never lease the same message twice. Reads (queue statistics, message views, discard
pages) use a second connection on a second thread: in WAL mode they see the last commit
without waiting behind, or holding up, the group commits.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from tiergate.domain.webhooks import REASON_EXPIRED, REASON_RECEIPT_TIMEOUT
from tiergate.store import _common as c
from tiergate.store.base import (
    ClaimOutcome,
    Discard,
    DiscardFilter,
    DiscardGroup,
    DiscardPage,
    EnqueueResult,
    HistoryEntry,
    InvalidRequest,
    Message,
    MessageState,
    MessageView,
    NewMessage,
    NewReplayJob,
    NotFound,
    Outcome,
    QueueStats,
    Receipt,
    Release,
    ReplayJob,
    ReplayState,
    RetryLater,
    SchemaTooNew,
    Store,
    StoreCounters,
    StoreUnavailable,
    Submitted,
    WebhookBacklog,
    WebhookEvent,
    WebhookResult,
    WorkerIdentity,
)
from tiergate.store.ids import new_id, new_ids
from tiergate.store.migrations import SQLITE_MIGRATIONS

SyncOp = Callable[[sqlite3.Connection], Any]

_COLS = ", ".join(c.MESSAGE_COLUMNS)
_DCOLS = ", ".join(c.DISCARD_COLUMNS)
_WCOLS = ", ".join(c.WEBHOOK_COLUMNS)
_JCOLS = ", ".join(c.JOB_COLUMNS)
_INSERT_HEAD = (
    "INSERT INTO messages (id, customer_id, traffic_class, destination, sender_id, body,"
    " encoding, segments, client_ref, idempotency_key, callback_url, expires_at, send_at,"
    " state, attempts, next_attempt_at, due_at, created_at, updated_at, replay_count) VALUES "
)
_INSERT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?, 0)"
_INSERT = _INSERT_HEAD + _INSERT_ROW
# Rows per multi-row INSERT: one statement step inserts them all with the GIL released
# (an executemany steps once per row and takes the GIL back between rows, so the event
# loop thread and this one would take turns). 17 parameters a row stays far below
# SQLite's 32,766.
_INSERT_CHUNK = 256
_INSERT_KEYED = (
    _INSERT + " ON CONFLICT (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
)
_EVENT = "INSERT INTO message_events (message_id, at, state, detail) VALUES (?, ?, ?, ?)"
_FILTERS = c.FilterSQL(lambda _: "?", c.to_epoch, arrays=False)


@functools.cache
def _insert_rows(count: int) -> str:
    """An INSERT of `count` new messages (cached: one text per size, so one prepared statement)."""
    return _INSERT_HEAD + ", ".join([_INSERT_ROW] * count)


def _path_of(url: str) -> str:
    path = url.removeprefix("sqlite://")
    if not path.startswith("/") or path.startswith("//"):
        raise InvalidRequest("a SQLite store URL needs an absolute path: sqlite:///abs/path.db")
    if path == "/:memory:" or ":memory:" in path:
        raise InvalidRequest("an in-memory SQLite store cannot be shared; give a file path")
    return path


class SQLiteStore(Store):
    """`Store` on one SQLite file."""

    def __init__(self, path: str, clock: c.Clock, busy_timeout: float) -> None:
        self._path = path
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiergate-sqlite")
        self._read_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiergate-sqlite-read")
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._group: c.GroupCommitter[SyncOp] | None = None
        self.counters = StoreCounters()

    @property
    def engine(self) -> str:
        """`sqlite`."""
        return "sqlite"

    @classmethod
    async def open(cls, url: str, *, clock: c.Clock | None = None, busy_timeout: float = 30.0) -> SQLiteStore:
        """Open the file, set WAL and synchronous=FULL, apply migrations."""
        path = _path_of(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        store = cls(path, clock or time.time, busy_timeout)
        try:
            await store._call(store._connect)
            await store._call_reader(store._connect_reader)
        except BaseException:
            await store._close_connections()
            raise
        store._group = c.GroupCommitter(store._run_group)
        return store

    # --- plumbing ----------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    async def _call_reader(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._read_executor, fn, *args)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    async def _write(self, op: SyncOp) -> Any:
        if self._group is None:
            raise StoreUnavailable("store is closed")
        return await self._group.submit(op)

    async def _read(self, op: SyncOp) -> Any:
        return await self._call_reader(self._read_sync, op)

    def _read_sync(self, op: SyncOp) -> Any:
        if self._reader is None:
            raise StoreUnavailable("store is closed")
        return op(self._reader)

    def _connect_reader(self) -> None:
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        conn.execute("PRAGMA query_only=ON")
        self._reader = conn

    def _connect(self) -> None:
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys=OFF")
        self._conn = conn
        self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version"
                " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            version = int(current.fetchone()[0])
            if version > len(SQLITE_MIGRATIONS):
                raise SchemaTooNew(
                    f"database schema version {version} is newer than this code ({len(SQLITE_MIGRATIONS)})"
                )
            for number, script in enumerate(SQLITE_MIGRATIONS, start=1):
                if number <= version:
                    continue
                for statement in script:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (number, self._clock()),
                )
                c.log.info("Applied store migration engine=sqlite version=%d", number)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def _run_group(self, ops: list[SyncOp]) -> list[Any]:
        result: list[Any] = await self._call(self._run_group_sync, ops)
        return result

    def _run_group_sync(self, ops: list[SyncOp]) -> list[Any]:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        results: list[Any] = []
        try:
            if len(ops) == 1:
                try:
                    results.append(ops[0](conn))
                except sqlite3.OperationalError:
                    raise
                except Exception as exc:
                    conn.execute("ROLLBACK")
                    return [exc]
            else:
                for op in ops:
                    conn.execute("SAVEPOINT op")
                    try:
                        results.append(op(conn))
                    except sqlite3.OperationalError:
                        raise
                    except Exception as exc:
                        conn.execute("ROLLBACK TO op")
                        results.append(exc)
                    conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.counters.group_commits += 1
        self.counters.grouped_requests += len(ops)
        return results

    # --- lifecycle ----------------------------------------------------------------------

    async def ping(self) -> None:
        """Run a trivial query."""
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Flush group commits and close the connections."""
        if self._group is not None:
            await self._group.close()
            self._group = None
        await self._close_connections()

    async def _close_connections(self) -> None:
        loop = asyncio.get_running_loop()
        if self._reader is not None:
            reader = self._reader
            self._reader = None
            await loop.run_in_executor(self._read_executor, reader.close)
        if self._conn is not None:
            conn = self._conn
            self._conn = None
            await loop.run_in_executor(self._executor, conn.close)
        self._read_executor.shutdown(wait=True)
        self._executor.shutdown(wait=True)

    # --- ingest -------------------------------------------------------------------------

    async def enqueue(self, batch: Sequence[NewMessage]) -> list[EnqueueResult]:
        """Store a batch in one savepoint of the next group commit."""
        if not batch:
            return []
        messages = list(batch)
        result: list[EnqueueResult] = await self._write(lambda conn: self._enqueue(conn, messages))
        return result

    def _enqueue(self, conn: sqlite3.Connection, batch: list[NewMessage]) -> list[EnqueueResult]:
        now = self._clock()
        ids = new_ids(len(batch), now)
        plain: list[tuple[Any, ...]] = []
        keyed: list[tuple[Any, ...]] = []
        for mid, m in zip(ids, batch, strict=True):
            # NewMessage is a tuple: customer_id … body, encoding, then the rest as stored.
            due = now if m.send_at is None else m.send_at
            row = (mid, *m[:5], m.encoding.value, *m[6:], due, due, now, now)
            (plain if m.idempotency_key is None else keyed).append(row)
        for first in range(0, len(plain), _INSERT_CHUNK):
            chunk = plain[first : first + _INSERT_CHUNK]
            conn.execute(_insert_rows(len(chunk)), [value for row in chunk for value in row])
        existing: dict[tuple[str, str | None], str] = {}
        if keyed:
            before = conn.total_changes
            conn.executemany(_INSERT_KEYED, keyed)
            if conn.total_changes - before != len(keyed):
                for row in keyed:
                    found = conn.execute(
                        "SELECT id FROM messages WHERE customer_id = ? AND idempotency_key = ?",
                        (row[1], row[9]),
                    ).fetchone()
                    existing[(row[1], row[9])] = found[0]
        results: list[EnqueueResult] = []
        for mid, m in zip(ids, batch, strict=True):
            if m.idempotency_key is None or not existing:
                results.append(EnqueueResult(mid, True))
            else:
                stored = existing[(m.customer_id, m.idempotency_key)]
                results.append(EnqueueResult(stored, stored == mid))
        return results

    # --- workers ------------------------------------------------------------------------

    async def lease(
        self,
        traffic_class: str,
        worker: WorkerIdentity,
        limit: int,
        visibility_timeout: float,
    ) -> list[Message]:
        """Lease up to `limit` due messages of the traffic class."""
        if limit <= 0:
            return []

        def op(conn: sqlite3.Connection) -> list[Message]:
            now = self._clock()
            expires = now + visibility_timeout
            rows = conn.execute(
                "UPDATE messages SET state = 'in_flight', lease_owner = ?, lease_expires_at = ?,"
                " due_at = ?, attempts = attempts + 1, tier = ?, revision = ?, updated_at = ?"
                " WHERE id IN (SELECT id FROM messages WHERE traffic_class = ?"
                " AND due_at IS NOT NULL AND due_at <= ? ORDER BY due_at LIMIT ?)"
                f" RETURNING {_COLS}",
                (
                    worker.owner,
                    expires,
                    expires,
                    worker.tier,
                    worker.revision,
                    now,
                    traffic_class,
                    now,
                    limit,
                ),
            ).fetchall()
            detail = f"owner={worker.owner} tier={worker.tier} revision={worker.revision}"
            conn.executemany(
                "INSERT INTO message_events (message_id, at, state, detail) VALUES (?, ?, ?, ?)",
                [(row[0], now, "in_flight", detail) for row in rows],
            )
            messages = [c.row_to_message(row, c.from_epoch) for row in rows]
            messages.sort(key=lambda m: m.next_attempt_at)
            return messages

        result: list[Message] = await self._write(op)
        return result

    async def complete(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply outcomes atomically; False for each lease the caller no longer holds."""
        if not outcomes:
            return []
        items = list(outcomes)
        result: list[bool] = await self._write(lambda conn: self._complete(conn, items))
        self.counters.stale_acks += result.count(False)
        return result

    def _complete(self, conn: sqlite3.Connection, outcomes: list[Outcome]) -> list[bool]:
        now = self._clock()
        done: list[bool] = []
        events: list[tuple[Any, ...]] = []
        owned = "WHERE id = ? AND lease_owner = ? AND state = 'in_flight'"
        for o in outcomes:
            match o:
                case Submitted(id=mid, owner=owner, upstream_message_id=upstream):
                    cur = conn.execute(
                        "UPDATE messages SET state = 'submitted', submitted_at = ?,"
                        " upstream_message_id = ?, lease_owner = NULL, lease_expires_at = NULL,"
                        f" due_at = NULL, updated_at = ? {owned}",
                        (now, upstream, now, mid, owner),
                    )
                    ok = cur.rowcount == 1
                    if ok:
                        events.append((mid, now, "submitted", f"upstream_id={upstream}"))
                        self._apply_pending_receipt(conn, upstream, now)
                case RetryLater(id=mid, owner=owner, not_before=not_before, error=error):
                    due = c.to_epoch(not_before)
                    cur = conn.execute(
                        "UPDATE messages SET state = 'queued', next_attempt_at = ?, due_at = ?,"
                        " last_error = ?, lease_owner = NULL, lease_expires_at = NULL,"
                        f" updated_at = ? {owned}",
                        (due, due, error, now, mid, owner),
                    )
                    ok = cur.rowcount == 1
                    if ok:
                        events.append((mid, now, "queued", f"retry: {error}"))
                case Discard(id=mid, owner=owner, reason=reason, upstream_error=upstream_error):
                    row = conn.execute(
                        "UPDATE messages SET state = 'discarded', last_error = ?,"
                        " lease_owner = NULL, lease_expires_at = NULL, due_at = NULL,"
                        f" updated_at = ? {owned}"
                        " RETURNING customer_id, traffic_class, tier, revision, attempts,"
                        " created_at",
                        (upstream_error or reason, now, mid, owner),
                    ).fetchone()
                    ok = row is not None
                    if ok:
                        conn.execute(
                            f"INSERT INTO discards ({_DCOLS})"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                            (
                                new_id(now),
                                mid,
                                *row[:4],
                                reason,
                                upstream_error,
                                row[4],
                                now,
                                row[5],
                            ),
                        )
                        events.append((mid, now, "discarded", f"reason={reason}"))
                case Release(id=mid, owner=owner):
                    cur = conn.execute(
                        "UPDATE messages SET state = 'queued', attempts = MAX(attempts - 1, 0),"
                        " next_attempt_at = ?, due_at = ?, lease_owner = NULL,"
                        f" lease_expires_at = NULL, updated_at = ? {owned}",
                        (now, now, now, mid, owner),
                    )
                    ok = cur.rowcount == 1
                    if ok:
                        events.append((mid, now, "queued", "released unsent"))
            done.append(ok)
        if events:
            conn.executemany(
                "INSERT INTO message_events (message_id, at, state, detail) VALUES (?, ?, ?, ?)",
                events,
            )
        return done

    def _apply_pending_receipt(self, conn: sqlite3.Connection, upstream: str, now: float) -> None:
        row = conn.execute(
            "DELETE FROM pending_receipts WHERE upstream_message_id = ? RETURNING delivered, detail",
            (upstream,),
        ).fetchone()
        if row is not None:
            self._receipt(conn, Receipt(upstream, bool(row[0]), row[1]), now, keep=False)

    async def extend_leases(self, ids: Sequence[str], owner: str, visibility_timeout: float) -> list[bool]:
        """Push lease expiry for messages `owner` still holds."""
        if not ids:
            return []
        items = list(ids)

        def op(conn: sqlite3.Connection) -> list[bool]:
            expires = self._clock() + visibility_timeout
            return [
                conn.execute(
                    "UPDATE messages SET lease_expires_at = ?, due_at = ?"
                    " WHERE id = ? AND lease_owner = ? AND state = 'in_flight'",
                    (expires, expires, mid, owner),
                ).rowcount
                == 1
                for mid in items
            ]

        result: list[bool] = await self._write(op)
        return result

    async def record_receipts(self, receipts: Sequence[Receipt]) -> list[Message | None]:
        """Apply delivery receipts, keeping early ones for their submit."""
        if not receipts:
            return []
        items = list(receipts)

        def op(conn: sqlite3.Connection) -> list[Message | None]:
            now = self._clock()
            events: list[tuple[Any, ...]] = []
            found = [self._receipt(conn, r, now, keep=True, events=events) for r in items]
            conn.executemany(_EVENT, events)
            return found

        result: list[Message | None] = await self._write(op)
        self.counters.orphan_receipts += result.count(None)
        return result

    def _receipt(
        self,
        conn: sqlite3.Connection,
        r: Receipt,
        now: float,
        keep: bool,
        events: list[tuple[Any, ...]] | None = None,
    ) -> Message | None:
        state = "delivered" if r.delivered else "failed"
        row = conn.execute(
            "UPDATE messages SET state = ?, delivered_at = ?, updated_at = ?,"
            " last_error = COALESCE(?, last_error)"
            " WHERE upstream_message_id = ? AND state IN ('submitted', 'unknown')"
            f" RETURNING {_COLS}",
            (state, now, now, None if r.delivered else r.detail, r.upstream_message_id),
        ).fetchone()
        if row is not None:
            event = (row[0], now, state, r.detail)
            if events is None:
                conn.execute(_EVENT, event)
            else:
                events.append(event)
            return c.row_to_message(row, c.from_epoch)
        row = conn.execute(
            f"SELECT {_COLS} FROM messages WHERE upstream_message_id = ? LIMIT 1",
            (r.upstream_message_id,),
        ).fetchone()
        if row is not None:
            return c.row_to_message(row, c.from_epoch)
        if keep:
            conn.execute(
                "INSERT INTO pending_receipts (upstream_message_id, delivered, detail,"
                " received_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (r.upstream_message_id, int(r.delivered), r.detail, now),
            )
        return None

    async def expire_unreceipted(self, submitted_before: datetime, limit: int = 1000) -> int:
        """Submitted messages older than the cutoff without a receipt become unknown."""
        cutoff = c.to_epoch(submitted_before)

        def op(conn: sqlite3.Connection) -> int:
            now = self._clock()
            rows = conn.execute(
                "UPDATE messages SET state = ?, last_error = ?, updated_at = ?"
                " WHERE id IN (SELECT id FROM messages WHERE state = 'submitted'"
                " AND submitted_at < ? ORDER BY submitted_at LIMIT ?) RETURNING id",
                (MessageState.UNKNOWN.value, REASON_RECEIPT_TIMEOUT, now, cutoff, limit),
            ).fetchall()
            detail = f"reason={REASON_RECEIPT_TIMEOUT}"
            conn.executemany(_EVENT, [(row[0], now, MessageState.UNKNOWN.value, detail) for row in rows])
            return len(rows)

        result: int = await self._write(op)
        return result

    async def expire_queued(self, limit: int = 1000) -> int:
        """Queued messages past their validity are discarded with reason expired."""

        def op(conn: sqlite3.Connection) -> int:
            now = self._clock()
            rows = conn.execute(
                "UPDATE messages SET state = 'discarded', last_error = ?, due_at = NULL,"
                " updated_at = ? WHERE id IN (SELECT id FROM messages WHERE expires_at <= ?"
                " AND state = 'queued' ORDER BY expires_at LIMIT ?)"
                " RETURNING id, customer_id, traffic_class, tier, revision, attempts, created_at",
                (REASON_EXPIRED, now, now, limit),
            ).fetchall()
            conn.executemany(
                f"INSERT INTO discards ({_DCOLS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL, NULL)",
                [
                    (did, *row[:5], REASON_EXPIRED, row[5], now, row[6])
                    for did, row in zip(new_ids(len(rows), now), rows, strict=True)
                ],
            )
            conn.executemany(
                _EVENT,
                [(row[0], now, MessageState.DISCARDED.value, f"reason={REASON_EXPIRED}") for row in rows],
            )
            return len(rows)

        result: int = await self._write(op)
        return result

    # --- webhooks -----------------------------------------------------------------------

    async def claim_webhook_events(self, limit: int, lease: float) -> list[WebhookEvent]:
        """Take due events, the oldest pending one of each message only."""

        def op(conn: sqlite3.Connection) -> list[WebhookEvent]:
            now = self._clock()
            rows = conn.execute(
                "UPDATE webhook_events SET next_attempt_at = ? WHERE seq IN"
                " (SELECT e.seq FROM webhook_events e WHERE e.status = 'pending'"
                " AND e.next_attempt_at <= ? AND NOT EXISTS (SELECT 1 FROM webhook_events p"
                " WHERE p.message_id = e.message_id AND p.status = 'pending' AND p.seq < e.seq)"
                f" ORDER BY e.next_attempt_at LIMIT ?) RETURNING {_WCOLS}",
                (now + lease, now, limit),
            ).fetchall()
            return sorted((c.row_to_webhook(row, c.from_epoch) for row in rows), key=lambda e: e.seq)

        result: list[WebhookEvent] = await self._write(op)
        return result

    async def record_webhook_results(self, results: Sequence[WebhookResult]) -> None:
        """Settle events after a post."""
        if not results:
            return
        items = list(results)

        def op(conn: sqlite3.Connection) -> None:
            now = self._clock()
            conn.executemany(
                "UPDATE webhook_events SET status = ?, attempts = attempts + 1, last_attempt_at = ?,"
                " last_status = ?, last_error = ?, next_attempt_at = COALESCE(?, next_attempt_at),"
                " sent_at = ? WHERE seq = ? AND status = 'pending'",
                [
                    (
                        c.webhook_status(r).value,
                        now,
                        r.status_code,
                        r.error,
                        None if r.retry_at is None else c.to_epoch(r.retry_at),
                        now if r.sent else None,
                        r.seq,
                    )
                    for r in items
                ],
            )

        await self._write(op)

    async def webhook_events(self, message_id: str) -> list[WebhookEvent]:
        """A message's events, oldest first."""
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_WCOLS} FROM webhook_events WHERE message_id = ? ORDER BY seq", (message_id,)
            ).fetchall()
        )
        return [c.row_to_webhook(row, c.from_epoch) for row in rows]

    async def webhook_backlog(self) -> WebhookBacklog:
        """Pending events and the oldest one's time."""
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT COUNT(*), MIN(occurred_at) FROM webhook_events WHERE status = 'pending'"
            ).fetchone()
        )
        return WebhookBacklog(int(row[0]), c.from_epoch(row[1]))

    # --- reads --------------------------------------------------------------------------

    async def get(self, id: str) -> MessageView | None:
        """The message with its history."""

        def op(conn: sqlite3.Connection) -> MessageView | None:
            row = conn.execute(f"SELECT {_COLS} FROM messages WHERE id = ?", (id,)).fetchone()
            if row is None:
                return None
            message = c.row_to_message(row, c.from_epoch)
            events = conn.execute(
                "SELECT at, state, detail FROM message_events WHERE message_id = ? ORDER BY seq",
                (id,),
            ).fetchall()
            history = [HistoryEntry(message.created_at, MessageState.QUEUED, "accepted")]
            for at, state, detail in events:
                when = c.from_epoch(at)
                assert when is not None
                history.append(HistoryEntry(when, MessageState(state), detail))
            return MessageView(message, tuple(history))

        result: MessageView | None = await self._read(op)
        return result

    async def queue_stats(self) -> dict[str, QueueStats]:
        """Counts and oldest queued per traffic class."""

        def op(conn: sqlite3.Connection) -> dict[str, QueueStats]:
            rows = conn.execute(
                "SELECT traffic_class,"
                " SUM(state = 'queued'), SUM(state = 'in_flight'),"
                " MIN(CASE WHEN state = 'queued' THEN MAX(created_at, COALESCE(send_at, 0)) END)"
                " FROM messages WHERE due_at IS NOT NULL GROUP BY traffic_class"
            ).fetchall()
            return {
                tc: QueueStats(tc, int(q or 0), int(f or 0), c.from_epoch(oldest))
                for tc, q, f, oldest in rows
            }

        result: dict[str, QueueStats] = await self._read(op)
        return result

    # --- discards and replay ------------------------------------------------------------

    async def list_discards(
        self, filter: DiscardFilter, limit: int = 100, cursor: str | None = None
    ) -> DiscardPage:
        """Matching discards, newest first."""
        params: list[Any] = []
        where = _FILTERS.where(filter, params)
        if cursor is not None:
            where += " AND id < ?"
            params.append(c.decode_cursor(cursor))
        params.append(limit + 1)
        sql = f"SELECT {_DCOLS} FROM discards WHERE {where} ORDER BY id DESC LIMIT ?"
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        items = tuple(c.row_to_discard(row, c.from_epoch) for row in rows[:limit])
        more = len(rows) > limit and items
        return DiscardPage(items, c.encode_cursor(items[-1].id) if more else None)

    async def count_discards(self, filter: DiscardFilter, group_by: DiscardGroup) -> dict[str, int]:
        """Matching discards counted per value of `group_by`."""
        column = c.GROUP_COLUMNS[DiscardGroup(group_by)]
        params: list[Any] = []
        where = _FILTERS.where(filter, params)
        sql = (
            f"SELECT COALESCE({column}, ''), COUNT(*) FROM discards WHERE {where}"
            f" GROUP BY COALESCE({column}, '')"
        )
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return {str(key): int(count) for key, count in rows}

    async def claim_for_replay(self, discard_ids: Sequence[str], job_id: str) -> list[ClaimOutcome]:
        """Re-queue discarded messages for `job_id`, each at most once across all jobs."""
        items = list(discard_ids)

        def op(conn: sqlite3.Connection) -> list[ClaimOutcome]:
            now = self._clock()
            if conn.execute("SELECT 1 FROM replay_jobs WHERE id = ?", (job_id,)).fetchone() is None:
                raise NotFound(f"replay job {job_id} not found")
            outcomes: list[ClaimOutcome] = []
            claimed_messages: set[str] = set()
            select = (
                "SELECT d.message_id, d.replay_job_id, m.state FROM discards d"
                " LEFT JOIN messages m ON m.id = d.message_id WHERE d.id = ?"
            )
            for did in items:
                row = conn.execute(select, (did,)).fetchone()
                if row is not None and row[0] in claimed_messages:
                    row = (row[0], row[1], MessageState.QUEUED.value)
                outcome = c.decide_claim(did, row, job_id)
                if outcome.claimed and outcome.message_id is not None:
                    claimed_messages.add(outcome.message_id)
                outcomes.append(outcome)
            won = [o for o in outcomes if o.claimed]
            if won:
                conn.executemany(
                    "UPDATE discards SET replay_job_id = ?, replayed_at = ? WHERE id = ?",
                    [(job_id, now, o.discard_id) for o in won],
                )
                conn.executemany(
                    "UPDATE messages SET state = 'queued', attempts = 0, next_attempt_at = ?,"
                    " due_at = ?, replay_count = replay_count + 1, replay_job_id = ?,"
                    " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                    " WHERE id = ?",
                    [(now, now, job_id, now, o.message_id) for o in won],
                )
                detail = f"replay job={job_id}"
                conn.executemany(
                    "INSERT INTO message_events (message_id, at, state, detail) VALUES (?, ?, 'queued', ?)",
                    [(o.message_id, now, detail) for o in won],
                )
            replayed, skipped = c.claim_counts(outcomes)
            conn.execute(
                "UPDATE replay_jobs SET replayed = replayed + ?, skipped = skipped + ?,"
                " updated_at = ? WHERE id = ?",
                (replayed, skipped, now, job_id),
            )
            return outcomes

        result: list[ClaimOutcome] = await self._write(op)
        return result

    async def create_replay_job(self, job: NewReplayJob) -> ReplayJob:
        """Insert a pending job."""

        def op(conn: sqlite3.Connection) -> ReplayJob:
            now = self._clock()
            row = conn.execute(
                f"INSERT INTO replay_jobs ({_JCOLS}) VALUES"
                " (?, ?, ?, ?, ?, ?, 'pending', 0, 0, 0, 0, NULL, NULL, ?, ?)"
                f" RETURNING {_JCOLS}",
                (
                    job.id or new_id(now),
                    job.filter.to_json(),
                    job.rate,
                    int(job.dry_run),
                    job.max_age_seconds,
                    job.source,
                    now,
                    now,
                ),
            ).fetchone()
            return c.row_to_job(row, c.from_epoch)

        result: ReplayJob = await self._write(op)
        return result

    async def get_replay_job(self, job_id: str) -> ReplayJob | None:
        """One job by id."""
        row = await self._read(
            lambda conn: conn.execute(f"SELECT {_JCOLS} FROM replay_jobs WHERE id = ?", (job_id,)).fetchone()
        )
        return None if row is None else c.row_to_job(row, c.from_epoch)

    async def list_replay_jobs(self, states: Sequence[ReplayState] = (), limit: int = 100) -> list[ReplayJob]:
        """Jobs, newest first."""
        params: list[Any] = [s.value for s in states]
        where = f"WHERE state IN ({', '.join('?' for _ in states)})" if states else ""
        params.append(limit)
        sql = f"SELECT {_JCOLS} FROM replay_jobs {where} ORDER BY id DESC LIMIT ?"
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [c.row_to_job(row, c.from_epoch) for row in rows]

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
        """Change state, counters, cursor or error of a job."""

        def op(conn: sqlite3.Connection) -> ReplayJob | None:
            now = self._clock()
            row = conn.execute(f"SELECT {_JCOLS} FROM replay_jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise NotFound(f"replay job {job_id} not found")
            current = c.row_to_job(row, c.from_epoch)
            if expected_states and current.state not in expected_states:
                return None
            row = conn.execute(
                "UPDATE replay_jobs SET state = ?, matched = ?, failed = failed + ?,"
                " cursor = ?, error = ?, updated_at = ? WHERE id = ?"
                f" RETURNING {_JCOLS}",
                (
                    (state or current.state).value,
                    current.matched if matched is None else matched,
                    add_failed,
                    current.cursor if cursor is None else cursor,
                    current.error if error is None else error,
                    now,
                    job_id,
                ),
            ).fetchone()
            return c.row_to_job(row, c.from_epoch)

        result: ReplayJob | None = await self._write(op)
        return result
