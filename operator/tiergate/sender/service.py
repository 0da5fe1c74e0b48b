"""The worker process: health endpoints, the store, the upstream and the loop, on one loop.

`/readyz` is the tier's deep readiness: it is 200 only when the store answers, every served
destination prefix has a bound upstream connector and the worker loop is leasing — exactly
what was missing in the incident, where workers ran but never started their sending service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tiergate.httpserver import HttpServer, install_stop_signals, metrics_endpoint
from tiergate.sender import metrics
from tiergate.sender.retry import RetryPolicy
from tiergate.sender.settings import WorkerSettings
from tiergate.sender.upstream import Upstream, build_upstream
from tiergate.sender.worker import Worker, WorkerOptions
from tiergate.store import Store, WorkerIdentity, open_store

log = logging.getLogger(__name__)

STORE_PING_INTERVAL = 2.0
HEARTBEAT_STALE = 10.0
GAUGE_INTERVAL = 1.0
STATS_SHARE = 0.05


class WorkerService:
    """One worker process: serves health on HTTP and runs the worker loop."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.identity = WorkerIdentity(
            owner=f"{settings.tier}-{uuid.uuid4().hex[:12]}",
            tier=settings.tier,
            revision=settings.revision,
        )
        self.store: Store | None = None
        self.upstream: Upstream | None = None
        self.worker: Worker | None = None
        self.store_ok = False
        self.store_error = "not opened"
        self.phase = "starting"
        self._started = time.monotonic()
        self._stop = asyncio.Event()
        labels = {"tier": settings.tier, "revision": settings.revision}
        self._ready_gauge = metrics.WORKER_READY.labels(**labels)
        self._bound_gauge = metrics.UPSTREAM_BOUND.labels(**labels)
        self.http = HttpServer(self.app(), settings.host, settings.port)

    def app(self) -> Starlette:
        """The health and metrics app."""
        return Starlette(
            routes=[
                Route("/healthz", self._healthz),
                Route("/readyz", self._readyz),
                Route("/metrics", metrics_endpoint),
            ]
        )

    def missing(self) -> list[str]:
        """What keeps this worker from sending; empty when ready."""
        missing = []
        if not self.store_ok:
            missing.append(f"store: {self.store_error}")
        missing.extend(self._upstream_missing())
        worker = self.worker
        if worker is None or not worker.running:
            missing.append("worker loop: not running")
        elif time.monotonic() - worker.heartbeat > HEARTBEAT_STALE:
            missing.append("worker loop: stalled")
        return missing

    def _upstream_missing(self) -> list[str]:
        if self.upstream is None:
            return ["upstream: not bound"]
        unserved = self.upstream.unserved()
        return [f"upstream: not bound for {p}" if p else "upstream: not bound" for p in unserved]

    async def _healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "alive", "phase": self.phase})

    async def _readyz(self, request: Request) -> Response:
        missing = self.missing()
        body = {
            "ready": not missing,
            "missing": missing,
            "tier": self.settings.tier,
            "revision": self.settings.revision,
            "traffic_class": self.settings.traffic_class,
            "phase": self.phase,
        }
        if self.settings.faults.any:
            body["faults"] = self.settings.faults.describe()
        return JSONResponse(body, status_code=200 if not missing else 503)

    def stop(self) -> None:
        """Begin graceful shutdown."""
        if not self._stop.is_set():
            log.info("Worker stopping tier=%s revision=%s", self.settings.tier, self.settings.revision)
            self.phase = "stopping"
            self._stop.set()
            if self.worker is not None:
                self.worker.stop()

    async def run(self, *, signals: bool = True) -> None:
        """Run until stopped (SIGTERM, SIGINT or `stop`)."""
        s = self.settings
        if signals:
            install_stop_signals(self.stop)
        await self.http.start()
        log.info(
            "Worker process serving tier=%s revision=%s traffic_class=%s port=%d faults=%s",
            s.tier,
            s.revision,
            s.traffic_class,
            s.port,
            s.faults.describe() or "none",
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            if s.faults.slow_start:
                self.phase = "slow-start"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), s.faults.slow_start)
            tasks.append(asyncio.create_task(self._store_watch(), name="store-watch"))
            tasks.append(asyncio.create_task(self._gauges(), name="gauges"))
            if s.faults.delayed:
                tasks.append(asyncio.create_task(self._fault_clock(), name="fault-clock"))
            if s.faults.no_bind_at_start:
                self.phase = "no-bind"
                log.warning("Sending service not started fault=no-bind tier=%s", s.tier)
                await self._stop.wait()
                return
            store = await self._wait_for_store()
            if store is None:
                return
            upstream = build_upstream(
                s.upstream,
                s.credentials,
                {"tier": s.tier, "revision": s.revision},
                faults=s.faults,
                failing=self.fault_in_effect,
            )
            self.upstream = upstream
            await upstream.start()
            log.info(
                "Upstream connectors configured tier=%s connectors=%s",
                s.tier,
                ",".join(f"{c.name}(tps={c.tps or 'none'},binds={c.binds})" for c in s.upstream.connectors),
            )
            options = WorkerOptions(
                window=s.window,
                visibility_timeout=s.visibility_timeout,
                policy=RetryPolicy(max_attempts=s.max_attempts, max_age=s.max_age),
            )
            self.worker = Worker(store, upstream, self.identity, s.traffic_class, options)
            if self._stop.is_set():
                return
            self.phase = "running"
            await self.worker.run()
        finally:
            self.phase = "stopping"
            self._ready_gauge.set(0)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.upstream is not None:
                await self.upstream.close()
            if self.store is not None:
                await self.store.close()
            await self.http.stop()
            log.info("Worker process stopped tier=%s", s.tier)

    def fault_in_effect(self) -> bool:
        """Whether the fault switch's failure holds now (``fail-after`` counts from the start)."""
        return self.settings.faults.failing(time.monotonic() - self._started)

    async def _fault_clock(self) -> None:
        faults = self.settings.faults
        await asyncio.sleep(max(0.0, faults.fail_after - (time.monotonic() - self._started)))
        log.warning(
            "Fault in effect faults=%s tier=%s after_seconds=%g",
            faults.describe(),
            self.settings.tier,
            faults.fail_after,
        )

    async def _wait_for_store(self) -> Store | None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self.store = await open_store(self.settings.store_url)
                self.store_ok = True
                self.store_error = ""
                return self.store
            except Exception as exc:
                self.store_error = f"unreachable ({type(exc).__name__})"
                log.warning("Store not reachable error=%r retry_in=%.1f", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(10.0, delay * 2)
        return None

    async def _store_watch(self) -> None:
        while True:
            store = self.store
            if store is not None:
                try:
                    await asyncio.wait_for(store.ping(), STORE_PING_INTERVAL)
                    self.store_ok, self.store_error = True, ""
                except Exception as exc:
                    self.store_ok = False
                    self.store_error = f"unreachable ({type(exc).__name__})"
            elif self.settings.faults.no_bind:
                self.store_error = "not opened (fault no-bind)"
            await asyncio.sleep(STORE_PING_INTERVAL)

    async def _gauges(self) -> None:
        tc = self.settings.traffic_class
        next_stats = 0.0
        while True:
            self._ready_gauge.set(0 if self.missing() else 1)
            self._bound_gauge.set(0 if self._upstream_missing() else 1)
            store = self.store
            if store is not None and self.store_ok and time.monotonic() >= next_stats:
                # The query counts every queued row: on a deep queue, keep it to a small
                # share of the store's time so that it does not slow the draining down.
                started = time.monotonic()
                try:
                    stats = await store.queue_stats()
                except Exception:
                    stats = {}
                took = time.monotonic() - started
                next_stats = started + max(GAUGE_INTERVAL, took / STATS_SHARE)
                row = stats.get(tc)
                metrics.QUEUE_DEPTH.labels(traffic_class=tc).set(row.depth if row else 0)
                oldest = row.oldest_queued_at if row else None
                metrics.OLDEST_QUEUED_AGE.labels(traffic_class=tc).set(
                    max(0.0, time.time() - oldest.timestamp()) if oldest else 0.0
                )
            await asyncio.sleep(GAUGE_INTERVAL)


async def run_worker(settings: WorkerSettings) -> None:
    """Run one worker process until SIGTERM."""
    await WorkerService(settings).run()
