"""Refreshes the replay gauges from the store: discards by reason and tier, the oldest
unreplayed discard's age, and job progress.

The store answers counts and pages, not "oldest"; the oldest unreplayed discard is found
by bisecting on time with one-row page reads, which the partial index on unreplayed
discards serves (a few dozen indexed probes per refresh, whatever the log's size).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from tiergate.replay import metrics
from tiergate.replay.progress import progress_of
from tiergate.store import DiscardFilter, DiscardGroup, ReplayJob, ReplayState, Store

log = logging.getLogger(__name__)

HORIZON = timedelta(days=400)
JOB_WINDOW = 100


async def oldest_discard_at(store: Store, f: DiscardFilter, now: datetime) -> datetime | None:
    """When the oldest discard matching `f` happened, to the second; None if there is none."""

    async def any_before(t: datetime) -> bool:
        page = await store.list_discards(replace(f, until=t), limit=1)
        return bool(page.items)

    if not await any_before(now + timedelta(seconds=1)):
        return None
    span = timedelta(seconds=60)
    hi = now + timedelta(seconds=1)
    lo = now - span
    while await any_before(lo):
        hi = lo
        span *= 4
        if span > HORIZON:
            return now - HORIZON
        lo = now - span
    while (hi - lo) > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if await any_before(mid):
            hi = mid
        else:
            lo = mid
    return lo


def job_outcomes(job: ReplayJob) -> dict[str, int]:
    """The progress numbers of a job, as the API and the gauges show them."""
    too_old = progress_of(job).too_old
    return {
        "matched": job.matched,
        "replayed": job.replayed,
        "skipped": job.skipped + too_old,
        "too_old": too_old,
        "failed": job.failed,
    }


class Gauges:
    """Keeps the replay gauges in step with the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._discard_labels: set[tuple[str, str, str]] = set()
        self._age_labels: set[str] = set()
        self._jobs: set[str] = set()

    async def refresh(self) -> None:
        """Read the store once and set every gauge; on failure mark the store down."""
        try:
            await self._discards()
            await self._jobs_gauges()
        except Exception as exc:
            metrics.STORE_UP.set(0)
            log.warning("Replay metrics refresh failed error=%r", exc)
            return
        metrics.STORE_UP.set(1)
        metrics.REFRESHED.set(time.time())

    async def _discards(self) -> None:
        now = datetime.now(UTC)
        seen: set[tuple[str, str, str]] = set()
        reasons = await self.store.count_discards(DiscardFilter(), DiscardGroup.REASON)
        for reason in reasons:
            for replayed in (True, False):
                by_tier = await self.store.count_discards(
                    DiscardFilter(reasons=(reason,), replayed=replayed), DiscardGroup.TIER
                )
                for tier, count in by_tier.items():
                    labels = (reason, tier, "true" if replayed else "false")
                    metrics.DISCARDS.labels(*labels).set(count)
                    seen.add(labels)
        for labels in self._discard_labels - seen:
            metrics.DISCARDS.labels(*labels).set(0)
        self._discard_labels |= seen
        ages: set[str] = set()
        for reason in reasons:
            unreplayed = DiscardFilter(reasons=(reason,), replayed=False)
            oldest = await oldest_discard_at(self.store, unreplayed, now)
            age = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
            metrics.OLDEST_UNREPLAYED_AGE.labels(reason=reason).set(age)
            ages.add(reason)
        for reason in self._age_labels - ages:
            metrics.OLDEST_UNREPLAYED_AGE.labels(reason=reason).set(0)
        self._age_labels |= ages

    async def _jobs_gauges(self) -> None:
        jobs = await self.store.list_replay_jobs(limit=JOB_WINDOW)
        by_state = dict.fromkeys((s.value for s in ReplayState), 0)
        current: set[str] = set()
        for job in jobs:
            by_state[job.state.value] += 1
            current.add(job.id)
            for outcome, value in job_outcomes(job).items():
                metrics.JOB_MESSAGES.labels(replay_job=job.id, outcome=outcome).set(value)
            for state in ReplayState:
                metrics.JOB_STATE.labels(replay_job=job.id, state=state.value).set(
                    1 if state == job.state else 0
                )
        for name, count in by_state.items():
            metrics.JOBS.labels(state=name).set(count)
        for gone in self._jobs - current:
            for outcome in ("matched", "replayed", "skipped", "too_old", "failed"):
                metrics.JOB_MESSAGES.remove(gone, outcome)
            for state in ReplayState:
                metrics.JOB_STATE.remove(gone, state.value)
        self._jobs = current
