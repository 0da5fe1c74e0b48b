"""The SQLite engine: the embedded default for one node and for development.

Only SQL and connections live here; the life cycle is `_dialect.DialectStore`'s. One
connection per store object lives in its own thread (the standard-library driver,
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
from pathlib import Path
from typing import Any

from tiergate.store import _common as c
from tiergate.store import _dialect as d
from tiergate.store import _lifecycle as lc
from tiergate.store.base import (
    EnqueueResult,
    InvalidRequest,
    Message,
    MessageState,
    NewMessage,
    ReceiptUpdate,
    StoreCounters,
    StoreUnavailable,
    WorkerIdentity,
    WorkerOutcome,
)
from tiergate.store.ids import new_ids
from tiergate.store.migrations import SQLITE_MIGRATIONS

SyncOp = Callable[[sqlite3.Connection], Any]

_COLS = ", ".join(c.MESSAGE_COLUMNS)
_QUEUED = MessageState.QUEUED.value
_INSERT_HEAD = (
    "INSERT INTO messages (id, customer_id, traffic_class, destination, sender_id, body,"
    " encoding, segments, client_ref, idempotency_key, callback_url, expires_at, send_at,"
    " state, attempts, next_attempt_at, due_at, created_at, updated_at, replay_count) VALUES "
)
_INSERT_ROW = f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{_QUEUED}', 0, ?, ?, ?, ?, 0)"
_INSERT = _INSERT_HEAD + _INSERT_ROW
# Rows per multi-row INSERT: one statement step inserts them all with the GIL released
# (an executemany steps once per row and takes the GIL back between rows, so the event
# loop thread and this one would take turns). 17 parameters a row stays far below
# SQLite's 32,766.
_INSERT_CHUNK = 256
_INSERT_KEYED = (
    _INSERT + " ON CONFLICT (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
)
_EVENT = "INSERT INTO message_events (message_id, at, state, data) VALUES (?, ?, ?, ?)"
_TRANSITION_WHERE = f"WHERE id = ? AND lease_owner = ? AND state = '{d.IN_FLIGHT}'"


@functools.cache
def _insert_rows(count: int) -> str:
    """An INSERT of `count` new messages (cached: one text per size, so one prepared statement)."""
    return _INSERT_HEAD + ", ".join([_INSERT_ROW] * count)


@functools.cache
def _transition_sql(t: lc.Transition) -> tuple[str, tuple[lc.Field | None, ...]]:
    """A transition's one-message UPDATE and its parameters in order (None: the clock)."""
    sources: list[lc.Field | None] = []

    def value(expr: lc.Expr) -> str:
        sources.append(expr if isinstance(expr, lc.Field) else None)
        return "?"

    sets = d.set_clause(t, lambda column: column, value, "MAX")
    # RETURNING costs a plain single-row UPDATE about half again: only where rows are needed.
    returning = f" RETURNING {', '.join(t.returning)}" if t.returning else ""
    return f"UPDATE messages SET {sets} {_TRANSITION_WHERE}{returning}", tuple(sources)


def _run(conn: sqlite3.Connection, op: d.Op) -> Any:
    match op:
        case d.Fetch(sql, args):
            return conn.execute(sql, args).fetchall()
        case d.FetchOne(sql, args):
            return conn.execute(sql, args).fetchone()
        case d.Execute(sql, args):
            return conn.execute(sql, args).rowcount
        case d.ExecuteMany(sql, rows):
            conn.executemany(sql, rows)
            return None


def _path_of(url: str) -> str:
    path = url.removeprefix("sqlite://")
    if not path.startswith("/") or path.startswith("//"):
        raise InvalidRequest("a SQLite store URL needs an absolute path: sqlite:///abs/path.db")
    if path == "/:memory:" or ":memory:" in path:
        raise InvalidRequest("an in-memory SQLite store cannot be shared; give a file path")
    return path


class SQLiteStore(d.DialectStore):
    """`Store` on one SQLite file."""

    numbered = False
    for_update = ""  # a write transaction is IMMEDIATE: it already excludes other writers
    skip_locked = ""
    greatest = "MAX"
    migrations = SQLITE_MIGRATIONS
    version_time_type = "REAL"
    json_text = "json_extract({column}, '$.{key}')"

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
        conn.row_factory = sqlite3.Row
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
        conn.row_factory = sqlite3.Row
        self._conn = conn
        self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            d.drive_sync(functools.partial(_run, conn), self.migrate_flow())
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
                    existing[(row[1], row[9])] = found["id"]
        results: list[EnqueueResult] = []
        for mid, m in zip(ids, batch, strict=True):
            if m.idempotency_key is None or not existing:
                results.append(EnqueueResult(mid, True))
            else:
                stored = existing[(m.customer_id, m.idempotency_key)]
                results.append(EnqueueResult(stored, stored == mid))
        return results

    # --- the dialect ----------------------------------------------------------------------

    def time_param(self, epoch: float) -> float:
        """Epoch seconds, as the columns hold them."""
        return epoch

    time_in = staticmethod(c.from_epoch)  # an attribute, not a method: it runs per column read

    def filter_time(self, value: Any) -> float:
        """A filter's datetime as epoch seconds."""
        return c.to_epoch(value)

    async def run_write(self, flow: d.Flow[d.T]) -> d.T:
        """Run the flow inside the next group commit."""
        result: d.T = await self._write(lambda conn: d.drive_sync(functools.partial(_run, conn), flow))
        return result

    async def run_read(self, flow: d.Flow[d.T]) -> d.T:
        """Run the flow on the reader connection."""
        result: d.T = await self._read(lambda conn: d.drive_sync(functools.partial(_run, conn), flow))
        return result

    def insert_events(self, events: Sequence[lc.Event], now: float) -> d.Op:
        """One row per event."""
        return d.ExecuteMany(_EVENT, [(e.message_id, now, e.state.value, e.data) for e in events])

    def lease_statement(
        self, traffic_class: str, worker: WorkerIdentity, limit: int, now: float, expires: float
    ) -> d.Op:
        """An atomic ``UPDATE … RETURNING`` over the due rows (IMMEDIATE: no two leasers)."""
        return d.Fetch(
            f"UPDATE messages SET state = '{d.IN_FLIGHT}', lease_owner = ?, lease_expires_at = ?,"
            " due_at = ?, attempts = attempts + 1, tier = ?, revision = ?, updated_at = ?"
            " WHERE id IN (SELECT id FROM messages WHERE traffic_class = ?"
            " AND due_at IS NOT NULL AND due_at <= ? ORDER BY due_at LIMIT ?)"
            f" RETURNING {_COLS}",
            (worker.owner, expires, expires, worker.tier, worker.revision, now, traffic_class, now, limit),
        )

    def apply_transition(
        self, t: lc.Transition, group: list[tuple[int, WorkerOutcome]], now: float
    ) -> d.Flow[list[tuple[int, Any]]]:
        """One UPDATE per outcome (each is a statement step in the writer thread)."""
        sql, sources = _transition_sql(t)
        applied: list[tuple[int, Any]] = []
        for i, o in group:
            args = [now if f is None else d.outcome_value(f, o, c.to_epoch) for f in sources]
            if t.returning:
                row = yield d.FetchOne(sql, (*args, o.id, o.owner))
                if row is not None:
                    applied.append((i, row))
            elif (yield d.Execute(sql, (*args, o.id, o.owner))) == 1:
                applied.append((i, None))
        return applied

    def apply_receipts(
        self, receipts: list[ReceiptUpdate], now: float, keep: bool
    ) -> d.Flow[list[Message | None]]:
        """Receipt by receipt: the submitted message moves, a known one is answered as is."""
        found: list[Message | None] = []
        events: list[lc.Event] = []
        for r in receipts:
            state = lc.receipt_state(r)
            row = yield d.FetchOne(
                "UPDATE messages SET state = ?, delivered_at = ?, updated_at = ?,"
                " last_error = COALESCE(?, last_error)"
                f" WHERE upstream_message_id = ? AND state IN {lc.AWAITING_RECEIPT}"
                f" RETURNING {_COLS}",
                (state.value, now, now, lc.receipt_error(r), r.upstream_message_id),
            )
            if row is not None:
                events.append(lc.Event(row["id"], state, lc.receipt_data(r.detail)))
            else:
                row = yield d.FetchOne(
                    f"SELECT {_COLS} FROM messages WHERE upstream_message_id = ? LIMIT 1",
                    (r.upstream_message_id,),
                )
            if row is None and keep:
                yield d.Execute(
                    "INSERT INTO pending_receipts (upstream_message_id, delivered, detail,"
                    " received_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (r.upstream_message_id, int(r.delivered), r.detail, now),
                )
            found.append(None if row is None else self.message(row))
        if events:
            yield self.insert_events(events, now)
        return found
