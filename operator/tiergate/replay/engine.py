"""Runs replay jobs from the store: page, pace, claim, record progress, repeat.

Exactly-once is the store's: `Store.claim_for_replay` re-queues a discarded message only if
it is still discarded and no job claimed that discard, in one transaction with the job's
counters. The engine adds pacing (a token bucket, never above the upstream cap), the job
life cycle (pending → running → done, paused and cancelled by compare-and-set on the state,
checked between batches), one running job per traffic class unless a job allows sharing,
and resumption: progress lives in the job record, so a process killed at any point picks
up every `running` job where its last recorded batch ended. A batch claimed but not yet
recorded is claimed again on resumption, which the store answers with "claimed by this
job" and does not count twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from tiergate.errors import TiergateError
from tiergate.replay import metrics
from tiergate.replay.progress import (
    Pacer,
    Progress,
    batch_size,
    conflicts,
    effective_rate,
    progress_of,
    split_by_age,
)
from tiergate.store import (
    DiscardFilter,
    DiscardGroup,
    NewReplayJob,
    NotFound,
    ReplayJob,
    ReplayState,
    Store,
    StoreError,
)

log = logging.getLogger(__name__)

ACTIVE = (ReplayState.PENDING, ReplayState.RUNNING, ReplayState.PAUSED)
FINAL = (ReplayState.DONE, ReplayState.CANCELLED, ReplayState.FAILED)


class RateAboveCap(TiergateError, ValueError):
    """A job asked for more messages per second than the upstream takes."""


class WrongState(TiergateError):
    """A pause, resume or cancel asked of a job in a state that does not allow it."""

    def __init__(self, job: ReplayJob, action: str) -> None:
        super().__init__(f"replay job {job.id} is {job.state.value}; cannot {action}")
        self.job = job
        self.action = action


@dataclass(frozen=True)
class EngineOptions:
    """Tuning of the engine."""

    max_rate: float | None = None
    max_batch: int = 500
    poll_interval: float = 1.0
    retry_delay: float = 1.0
    max_retries: int = 20


class ReplayEngine:
    """Schedules and runs the replay jobs of one store."""

    def __init__(
        self,
        store: Store,
        options: EngineOptions | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.options = options or EngineOptions()
        self._clock = clock
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._scheduler: asyncio.Task[None] | None = None
        self.running = False

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Resume jobs left running by an earlier process, then schedule pending ones."""
        for job in await self.store.list_replay_jobs([ReplayState.RUNNING], limit=10_000):
            log.info("Resuming replay job job=%s", job.id)
            self._spawn(job.id)
        self._scheduler = asyncio.create_task(self._schedule_loop(), name="replay-scheduler")
        self.running = True

    async def close(self) -> None:
        """Stop scheduling and stop runners between batches; running jobs stay `running`."""
        self.running = False
        tasks = [t for t in (self._scheduler, *self._runners.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._runners.clear()

    def wake(self) -> None:
        """Look at pending jobs now rather than at the next poll."""
        self._wake.set()

    @property
    def active(self) -> int:
        """Jobs this engine is running now."""
        return len(self._runners)

    # --- on-call actions -----------------------------------------------------------------

    async def create(self, job: NewReplayJob, *, allow_concurrent: bool = False) -> ReplayJob:
        """Store a new pending job (its options in its progress record) and wake the scheduler."""
        cap = self.options.max_rate
        if job.rate is not None and cap is not None and job.rate > cap:
            raise RateAboveCap(f"rate {job.rate:g}/s is above the upstream cap {cap:g}/s")
        async with self._lock:
            created = await self.store.create_replay_job(job)
            stored = await self.store.update_replay_job(
                created.id, cursor=Progress(allow_concurrent=allow_concurrent).encode()
            )
        assert stored is not None
        log.info(
            "Replay job created job=%s dry_run=%s rate=%s max_age=%s source=%s",
            stored.id,
            stored.dry_run,
            stored.rate,
            stored.max_age_seconds,
            stored.source,
        )
        self.wake()
        return stored

    async def pause(self, job_id: str) -> ReplayJob:
        """Pause a pending or running job (its runner stops after the current batch)."""
        return await self._transition(job_id, ReplayState.PAUSED, ACTIVE[:2], "pause")

    async def resume(self, job_id: str) -> ReplayJob:
        """Put a paused job back in line; it runs when its traffic class is free."""
        job = await self._transition(job_id, ReplayState.PENDING, (ReplayState.PAUSED,), "resume")
        self.wake()
        return job

    async def cancel(self, job_id: str) -> ReplayJob:
        """Cancel a job that has not finished; what it already re-queued stays queued."""
        return await self._transition(job_id, ReplayState.CANCELLED, ACTIVE, "cancel")

    async def _transition(
        self, job_id: str, state: ReplayState, expected: tuple[ReplayState, ...], action: str
    ) -> ReplayJob:
        updated = await self.store.update_replay_job(job_id, state=state, expected_states=expected)
        if updated is None:
            current = await self.store.get_replay_job(job_id)
            if current is None:
                raise NotFound(f"replay job {job_id} not found")
            raise WrongState(current, action)
        log.info("Replay job %s job=%s", state.value, job_id)
        return updated

    # --- scheduling ----------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.poll_interval)
            self._wake.clear()
            try:
                await self.schedule_once()
            except StoreError as exc:
                log.warning("Replay scheduling failed error=%r", exc)

    async def schedule_once(self) -> list[str]:
        """Start the pending jobs whose traffic classes are free; returns their ids."""
        started: list[str] = []
        async with self._lock:
            pending = await self.store.list_replay_jobs([ReplayState.PENDING], limit=1000)
            if not pending:
                return started
            running = await self.store.list_replay_jobs([ReplayState.RUNNING], limit=10_000)
            for job in sorted(pending, key=lambda j: j.id):
                blocker = conflicts(job, running)
                if blocker is not None:
                    log.debug("Replay job waits job=%s behind=%s", job.id, blocker.id)
                    continue
                claimed = await self.store.update_replay_job(
                    job.id, state=ReplayState.RUNNING, expected_states=[ReplayState.PENDING]
                )
                if claimed is None:
                    continue
                running.append(claimed)
                started.append(job.id)
                self._spawn(job.id)
        return started

    def _spawn(self, job_id: str) -> None:
        if job_id in self._runners:
            return
        task = asyncio.create_task(self._run(job_id), name=f"replay-{job_id}")
        self._runners[job_id] = task
        task.add_done_callback(lambda _: self._finished(job_id))

    def _finished(self, job_id: str) -> None:
        self._runners.pop(job_id, None)
        self.wake()

    # --- one job -------------------------------------------------------------------------

    async def _run(self, job_id: str) -> None:
        failures = 0
        while True:
            try:
                await self._run_once(job_id)
                return
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                failures += 1
                if failures > self.options.max_retries:
                    await self._fail(job_id, f"store kept failing: {exc}")
                    return
                log.warning("Replay job retrying job=%s attempt=%d error=%r", job_id, failures, exc)
                await asyncio.sleep(min(30.0, self.options.retry_delay * failures))
            except Exception as exc:
                log.exception("Replay job crashed job=%s", job_id)
                await self._fail(job_id, f"{type(exc).__name__}: {exc}")
                return

    async def _fail(self, job_id: str, error: str) -> None:
        with contextlib.suppress(StoreError):
            await self.store.update_replay_job(
                job_id, state=ReplayState.FAILED, expected_states=[ReplayState.RUNNING], error=error
            )
        log.error("Replay job failed job=%s error=%s", job_id, error)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def _run_once(self, job_id: str) -> None:
        job = await self.store.get_replay_job(job_id)
        if job is None or job.state != ReplayState.RUNNING:
            return
        progress = progress_of(job)
        if job.dry_run:
            await self._dry_run(job, progress)
            return
        if not progress.started:
            matched = sum((await self.store.count_discards(job.filter, DiscardGroup.TRAFFIC_CLASS)).values())
            progress = replace(progress, started=True)
            updated = await self.store.update_replay_job(job.id, matched=matched, cursor=progress.encode())
            if updated is None or updated.state != ReplayState.RUNNING:
                return
            job = updated
            log.info("Replay job started job=%s matched=%d", job.id, matched)
        rate = effective_rate(job.rate, self.options.max_rate)
        size = batch_size(rate, self.options.max_batch)
        # Half a second of credit absorbs event-loop stalls without bursting past the rate.
        pacer = Pacer(rate, burst=max(size, rate / 2)) if rate is not None else None
        while not progress.finished:
            page = await self.store.list_discards(job.filter, limit=size, cursor=progress.page)
            fresh, stale = split_by_age(page.items, job.max_age_seconds, self._now())
            if fresh:
                if pacer is not None:
                    await pacer.take(len(fresh))
                outcomes = await self.store.claim_for_replay([d.id for d in fresh], job.id)
                for outcome in outcomes:
                    if outcome.claimed:
                        metrics.REPLAYED.inc()
                    elif outcome.skip_reason is not None:
                        metrics.SKIPPED.labels(reason=outcome.skip_reason.value).inc()
            if stale:
                metrics.SKIPPED.labels(reason="too_old").inc(len(stale))
            progress = progress.after_page(page.next_cursor if page.items else None, len(stale))
            updated = await self.store.update_replay_job(job.id, cursor=progress.encode())
            if updated is None or updated.state != ReplayState.RUNNING:
                log.info(
                    "Replay job stopped job=%s state=%s", job.id, updated.state.value if updated else "gone"
                )
                return
            job = updated
        done = await self.store.update_replay_job(
            job.id, state=ReplayState.DONE, expected_states=[ReplayState.RUNNING]
        )
        if done is not None:
            log.info(
                "Replay job done job=%s matched=%d replayed=%d skipped=%d too_old=%d",
                done.id,
                done.matched,
                done.replayed,
                done.skipped,
                progress.too_old,
            )

    async def _dry_run(self, job: ReplayJob, progress: Progress) -> None:
        matched = await self._count(job.filter)
        f = job.filter
        if job.max_age_seconds is not None:
            f = replace(f, message_created_since=self._now() - timedelta(seconds=job.max_age_seconds))
        fresh = await self._count(f) if f is not job.filter else matched
        would = await self._count(replace(f, replayed=False)) if f.replayed is not True else 0
        progress = replace(progress, started=True, finished=True, too_old=matched - fresh, would_replay=would)
        done = await self.store.update_replay_job(
            job.id,
            state=ReplayState.DONE,
            expected_states=[ReplayState.RUNNING],
            matched=matched,
            cursor=progress.encode(),
        )
        if done is not None:
            log.info(
                "Replay dry run done job=%s matched=%d would_replay=%d too_old=%d",
                job.id,
                matched,
                would,
                progress.too_old,
            )

    async def _count(self, f: DiscardFilter) -> int:
        return sum((await self.store.count_discards(f, DiscardGroup.TRAFFIC_CLASS)).values())
