"""The replay service: the discard log and replay jobs over HTTP, for on-call and the operator.

Routes (all JSON; bearer tokens from the replay token file, never the ingest tokens)::

    GET  /v1/discards                 filter as query parameters, cursor paging
    GET  /v1/discards/counts          ?group_by=reason|tier|customer|revision|traffic_class
    POST /v1/replays                  {filter | all, rate, dry_run, max_age, allow_concurrent, source}
    GET  /v1/replays                  ?state=...
    GET  /v1/replays/{id}
    POST /v1/replays/{id}:pause | :resume | :cancel
    GET  /healthz  /readyz  /metrics

401 means no or unknown token, 403 a read-only token asking to act; bad input is a 4xx
whose body names the field. A job over every discard needs ``"all": true`` (an empty filter
alone is refused), and a job's rate never passes the cap (`DEFAULT_MAX_RATE` unless set).
The contract is `openapi.json` beside this module, served at ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tiergate.httpbody import BodyTooLarge, is_json, read_body
from tiergate.httpserver import HttpServer, install_stop_signals, metrics_endpoint, openapi_endpoint
from tiergate.replay.engine import EngineOptions, RateAboveCap, ReplayEngine, WrongState
from tiergate.replay.filters import (
    FILTER_FIELDS,
    BadField,
    filter_to_wire,
    parse_filter,
    parse_group,
    parse_seconds,
    query_to_wire,
)
from tiergate.replay.gauges import Gauges, job_outcomes
from tiergate.replay.progress import effective_rate, progress_of
from tiergate.replay.settings import Caller, ReplaySettings, Role, token_digest
from tiergate.store import (
    DiscardEvent,
    DiscardFilter,
    InvalidRequest,
    NewReplayJob,
    NotFound,
    ReplayJob,
    ReplayState,
    Store,
    StoreError,
    open_store,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_PAGE = 1000
CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
JOB_FIELDS = frozenset({"filter", "all", "rate", "dry_run", "max_age", "allow_concurrent", "source"})
OPENAPI = Path(__file__).with_name("openapi.json")


def _error(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if field is not None:
        body["error"]["field"] = field
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _bad(exc: BadField) -> JSONResponse:
    return _error(422, "invalid", str(exc), field=exc.field)


def discard_view(d: DiscardEvent) -> dict[str, Any]:
    """A discard event as the API shows it."""
    return {
        "id": d.id,
        "message_id": d.message_id,
        "customer": d.customer_id,
        "traffic_class": d.traffic_class,
        "tier": d.tier,
        "revision": d.revision,
        "reason": d.reason,
        "upstream_error": d.upstream_error,
        "attempts": d.attempts,
        "discarded_at": d.discarded_at.isoformat(),
        "message_created_at": d.message_created_at.isoformat(),
        "replay_job": d.replay_job_id,
        "replayed_at": d.replayed_at.isoformat() if d.replayed_at else None,
    }


def job_view(job: ReplayJob, cap: float | None) -> dict[str, Any]:
    """A replay job as the API shows it."""
    progress = progress_of(job)
    outcomes = job_outcomes(job)
    view: dict[str, Any] = {
        "id": job.id,
        "state": job.state.value,
        "filter": filter_to_wire(job.filter),
        "rate": job.rate,
        "effective_rate": effective_rate(job.rate, cap),
        "dry_run": job.dry_run,
        "max_age": job.max_age_seconds,
        "allow_concurrent": progress.allow_concurrent,
        "source": job.source,
        **outcomes,
        "done": job.replayed + outcomes["skipped"],
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }
    if job.dry_run:
        view["would_replay"] = progress.would_replay
    return view


class ReplayApi:
    """The ASGI app of the replay service over one store and engine."""

    def __init__(self, store: Store, engine: ReplayEngine, settings: ReplaySettings) -> None:
        self.store = store
        self.engine = engine
        self.settings = settings
        self.app = Starlette(
            routes=[
                Route("/v1/discards", self.list_discards, methods=["GET"]),
                Route("/v1/discards/counts", self.count_discards, methods=["GET"]),
                Route("/v1/replays", self.create_job, methods=["POST"]),
                Route("/v1/replays", self.list_jobs, methods=["GET"]),
                Route("/v1/replays/{id}:{action}", self.act, methods=["POST"]),
                Route("/v1/replays/{id}/{action}", self.act, methods=["POST"]),
                Route("/v1/replays/{id}", self.get_job, methods=["GET"]),
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/metrics", metrics_endpoint),
                Route("/openapi.json", openapi_endpoint(OPENAPI), methods=["GET"]),
            ]
        )

    # --- auth ----------------------------------------------------------------------------

    def _caller(self, request: Request, role: Role) -> Caller | JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        caller = None
        if scheme.lower() == "bearer" and token.strip():
            caller = self.settings.tokens.get(token_digest(token.strip()))
        if caller is None:
            return _error(
                401,
                "unauthorized",
                "a valid replay bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="tiergate-replay"'},
            )
        if role == Role.REPLAY and caller.role != Role.REPLAY:
            return _error(
                403, "forbidden", f"token of {caller.name} is read-only; replay needs the replay role"
            )
        return caller

    # --- discards ------------------------------------------------------------------------

    async def list_discards(self, request: Request) -> Response:
        """GET /v1/discards."""
        caller = self._caller(request, Role.READ)
        if isinstance(caller, Response):
            return caller
        params = {k: request.query_params.getlist(k) for k in request.query_params}
        unknown = sorted(set(params) - FILTER_FIELDS - {"limit", "cursor"})
        if unknown:
            return _error(422, "invalid", f"{unknown[0]}: unknown query parameter", field=unknown[0])
        try:
            f = parse_filter(query_to_wire(params))
            limit = _limit(params.get("limit"))
        except BadField as exc:
            return _bad(exc)
        cursor = request.query_params.get("cursor") or None
        if cursor is not None and not CURSOR.match(cursor):
            return _error(422, "invalid", "cursor: not a cursor this service gave out", field="cursor")
        try:
            page = await self.store.list_discards(f, limit=limit, cursor=cursor)
        except StoreError as exc:
            return _store_error(exc, "cursor")
        return JSONResponse(
            {
                "items": [discard_view(d) for d in page.items],
                "next_cursor": page.next_cursor,
            }
        )

    async def count_discards(self, request: Request) -> Response:
        """GET /v1/discards/counts."""
        caller = self._caller(request, Role.READ)
        if isinstance(caller, Response):
            return caller
        params = {k: request.query_params.getlist(k) for k in request.query_params}
        unknown = sorted(set(params) - FILTER_FIELDS - {"group_by"})
        if unknown:
            return _error(422, "invalid", f"{unknown[0]}: unknown query parameter", field=unknown[0])
        try:
            group = parse_group(request.query_params.get("group_by", "reason"))
            f = parse_filter(query_to_wire(params))
        except BadField as exc:
            return _bad(exc)
        try:
            counts = await self.store.count_discards(f, group)
        except StoreError as exc:
            return _store_error(exc, None)
        ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return JSONResponse({"group_by": group.value, "counts": ordered, "total": sum(counts.values())})

    # --- jobs ----------------------------------------------------------------------------

    async def create_job(self, request: Request) -> Response:
        """POST /v1/replays."""
        caller = self._caller(request, Role.REPLAY)
        if isinstance(caller, Response):
            return caller
        if not is_json(request):
            return _error(415, "unsupported_media_type", "send application/json")
        try:
            raw = await read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge as exc:
            return _error(413, "too_large", str(exc), headers={"Connection": "close"})
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "invalid_json", "body is not valid JSON")
        try:
            job, allow_concurrent = _parse_job(body, caller)
        except BadField as exc:
            return _bad(exc)
        try:
            created = await self.engine.create(job, allow_concurrent=allow_concurrent)
        except RateAboveCap as exc:
            return _error(422, "invalid", f"rate: {exc}", field="rate")
        except StoreError as exc:
            return _store_error(exc, None)
        log.info("Replay job requested job=%s by=%s", created.id, caller.name)
        return JSONResponse(
            job_view(created, self.settings.max_rate),
            status_code=201,
            headers={"Location": f"/v1/replays/{created.id}"},
        )

    async def list_jobs(self, request: Request) -> Response:
        """GET /v1/replays."""
        caller = self._caller(request, Role.READ)
        if isinstance(caller, Response):
            return caller
        states: list[ReplayState] = []
        for raw in request.query_params.getlist("state"):
            for part in raw.split(","):
                try:
                    states.append(ReplayState(part.strip()))
                except ValueError:
                    known = ", ".join(s.value for s in ReplayState)
                    return _error(422, "invalid", f"state: expected one of {known}", field="state")
        try:
            limit = _limit(request.query_params.getlist("limit"))
            jobs = await self.store.list_replay_jobs(states, limit=limit)
        except BadField as exc:
            return _bad(exc)
        except StoreError as exc:
            return _store_error(exc, None)
        return JSONResponse({"items": [job_view(j, self.settings.max_rate) for j in jobs]})

    async def get_job(self, request: Request) -> Response:
        """GET /v1/replays/{id}."""
        caller = self._caller(request, Role.READ)
        if isinstance(caller, Response):
            return caller
        try:
            job = await self.store.get_replay_job(request.path_params["id"])
        except StoreError as exc:
            return _store_error(exc, None)
        if job is None:
            return _error(404, "not_found", "no such replay job")
        return JSONResponse(job_view(job, self.settings.max_rate))

    async def act(self, request: Request) -> Response:
        """POST /v1/replays/{id}:pause|:resume|:cancel."""
        caller = self._caller(request, Role.REPLAY)
        if isinstance(caller, Response):
            return caller
        action = request.path_params["action"]
        actions: dict[str, Callable[[str], Any]] = {
            "pause": self.engine.pause,
            "resume": self.engine.resume,
            "cancel": self.engine.cancel,
        }
        if action not in actions:
            return _error(404, "not_found", f"unknown action {action!r}: use pause, resume or cancel")
        job_id = request.path_params["id"]
        try:
            job = await actions[action](job_id)
        except WrongState as exc:
            return _error(409, "conflict", str(exc))
        except NotFound:
            return _error(404, "not_found", "no such replay job")
        except StoreError as exc:
            return _store_error(exc, None)
        log.info("Replay job action=%s job=%s by=%s", action, job_id, caller.name)
        return JSONResponse(job_view(job, self.settings.max_rate))

    # --- probes --------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        """Alive."""
        return JSONResponse({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        """Ready when the store answers and the engine runs."""
        missing: list[str] = []
        try:
            await asyncio.wait_for(self.store.ping(), 2.0)
        except Exception as exc:
            missing.append(f"store: {type(exc).__name__}")
        if not self.engine.running:
            missing.append("engine: not running")
        return JSONResponse({"ready": not missing, "missing": missing}, status_code=503 if missing else 200)


def _limit(values: list[str] | None) -> int:
    if not values:
        return 100
    try:
        limit = int(values[-1])
    except ValueError:
        raise BadField("limit", f"expected an integer, got {values[-1]!r}") from None
    if not 1 <= limit <= MAX_PAGE:
        raise BadField("limit", f"must be between 1 and {MAX_PAGE}")
    return limit


def _store_error(exc: StoreError, field: str | None) -> JSONResponse:
    if isinstance(exc, InvalidRequest):
        return _error(422, "invalid", f"{field}: {exc}" if field else str(exc), field=field)
    log.error("Store call failed error=%r", exc)
    return _error(
        503, "store_unavailable", "the store cannot be reached right now", headers={"Retry-After": "1"}
    )


def _json_bool(body: Mapping[str, object], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadField(name, f"expected a JSON boolean, got {value!r}")
    return value


def _parse_job(body: object, caller: Caller) -> tuple[NewReplayJob, bool]:
    if not isinstance(body, dict):
        raise BadField("body", "expected a JSON object")
    unknown = sorted(set(body) - JOB_FIELDS)
    if unknown:
        raise BadField(unknown[0], f"unknown field; known: {', '.join(sorted(JOB_FIELDS))}")
    raw_filter = body.get("filter", {})
    if not isinstance(raw_filter, dict):
        raise BadField("filter", "expected an object")
    try:
        f = parse_filter(raw_filter)
    except BadField as exc:
        raise BadField(f"filter.{exc.field}", exc.message) from None
    everything = body.get("all", False)
    if not isinstance(everything, bool):
        raise BadField("all", f"expected true or false, got {everything!r}")
    rate = body.get("rate")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0 or rate == float("inf")
    ):
        raise BadField("rate", "expected a positive number of messages per second")
    max_age = parse_seconds("max_age", body["max_age"]) if body.get("max_age") is not None else None
    dry_run = _json_bool(body, "dry_run")
    allow_concurrent = _json_bool(body, "allow_concurrent")
    source = body.get("source")
    if source is not None and (not isinstance(source, str) or len(source) > 200):
        raise BadField("source", "expected a string of at most 200 characters")
    unscoped = dataclasses.replace(f, replayed=None) == DiscardFilter()
    if unscoped and not everything:
        raise BadField("filter", 'selects every discard: narrow it, or send "all": true')
    if everything and not unscoped:
        raise BadField("all", "cannot be combined with filter fields")
    job = NewReplayJob(
        filter=f,
        rate=float(rate) if rate is not None else None,
        dry_run=dry_run,
        max_age_seconds=max_age,
        source=source or f"api:{caller.name}",
    )
    return job, allow_concurrent


class ReplayService:
    """Store, engine, gauges and HTTP server of one replay process."""

    def __init__(self, store: Store, settings: ReplaySettings, options: EngineOptions | None = None) -> None:
        self.store = store
        self.settings = settings
        self.engine = ReplayEngine(
            store, options or EngineOptions(max_rate=settings.max_rate, max_batch=settings.max_batch)
        )
        self.gauges = Gauges(store)
        self.api = ReplayApi(store, self.engine, settings)
        self.http = HttpServer(self.api.app, settings.host, settings.port)
        self._gauge_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Resume jobs, start the gauges and listen."""
        await self.engine.start()
        self._gauge_task = asyncio.create_task(self._gauge_loop(), name="replay-gauges")
        await self.http.start()

    async def _gauge_loop(self) -> None:
        while True:
            await self.gauges.refresh()
            await asyncio.sleep(self.settings.metrics_interval)

    async def stop(self) -> None:
        """Stop listening, then stop the engine between batches."""
        await self.http.stop()
        if self._gauge_task is not None:
            self._gauge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gauge_task
        await self.engine.close()


async def run_service(settings: ReplaySettings) -> None:
    """Serve the replay API and run jobs until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    install_stop_signals(stop.set)
    store = await open_store(settings.store_url)
    service = ReplayService(store, settings)
    try:
        await service.start()
        log.info(
            "Replay service serving port=%d max_rate=%s tokens=%d",
            settings.port,
            settings.max_rate,
            len(settings.tokens),
        )
        await stop.wait()
    finally:
        await service.stop()
        await store.close()
        log.info("Replay service stopped")
