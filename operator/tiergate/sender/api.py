"""The ingest API: validate, write durably, answer 202 with the message id.

Ingest depends only on the store: workers and the upstream may be down and messages still
queue. It answers 4xx naming the field for bad input, 401 for a bad token, 429 with
Retry-After over the configured queue depth or a customer's rate, and 503 only when the
store itself cannot take the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tiergate.domain.messages import (
    NO_DELIVERY,
    FieldError,
    ValidationFailed,
    ValidMessage,
    validate_batch,
    validate_message,
)
from tiergate.httpserver import HttpServer, install_stop_signals, metrics_endpoint
from tiergate.sender import metrics
from tiergate.sender.ratelimit import TokenBucket
from tiergate.sender.settings import ApiSettings, token_digest
from tiergate.sender.webhooks import Dispatcher, Sweeper, event_of
from tiergate.store import (
    MessageView,
    QueueStats,
    Store,
    StoreError,
    WebhookEvent,
    open_store,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024


STATS_SHARE = 0.05


def stats_pause(interval: float, took: float) -> float:
    """Seconds to wait before the next queue-statistics query.

    The query counts every queued row, so on a deep queue it is kept to `STATS_SHARE` of
    the time: when it is needed most (a backlog), it must not slow the ingest down.
    """
    return max(interval, took / STATS_SHARE)


class _Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(
    status: int,
    code: str,
    message: str,
    *,
    fields: tuple[FieldError, ...] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    metrics.REJECTED.labels(status=str(status)).inc()
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if fields:
        body["error"]["fields"] = [f.as_dict() for f in fields]
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _webhook_view(row: WebhookEvent) -> dict[str, Any]:
    event = event_of(row)
    return {
        "event_id": event.id,
        "type": event.type.value,
        "occurred_at": event.occurred_at,
        "status": row.status,
        "attempts": row.attempts,
        "last_attempt_at": _when(row.last_attempt_at),
        "last_status": row.last_status,
        "last_error": row.last_error,
        "next_attempt_at": _when(row.next_attempt_at) if row.status == "pending" else None,
        "sent_at": _when(row.sent_at),
    }


def _view(view: MessageView, webhooks: list[WebhookEvent]) -> dict[str, Any]:
    m = view.message
    return {
        "id": m.id,
        "state": m.state.value,
        "customer_id": m.customer_id,
        "traffic_class": m.traffic_class,
        "destination": m.destination,
        "sender_id": m.sender_id,
        "encoding": m.encoding.value,
        "segments": m.segments,
        "client_ref": m.client_ref,
        "attempts": m.attempts,
        "created_at": m.created_at.isoformat(),
        "submitted_at": m.submitted_at.isoformat() if m.submitted_at else None,
        "delivered_at": m.delivered_at.isoformat() if m.delivered_at else None,
        "upstream_message_id": m.upstream_message_id,
        "last_error": m.last_error,
        "tier": m.tier,
        "revision": m.revision,
        "replay_count": m.replay_count,
        "callback_url": m.callback_url,
        "validity_until": _when(m.expires_at),
        "send_at": _when(m.send_at),
        "webhooks": [_webhook_view(w) for w in webhooks],
        "history": [
            {"at": h.at.isoformat(), "state": h.state.value, "detail": h.detail} for h in view.history
        ],
    }


class IngestApi:
    """The ASGI app of the ingest API over one store."""

    def __init__(self, store: Store, settings: ApiSettings) -> None:
        self.store = store
        self.settings = settings
        self._buckets: dict[str, TokenBucket] = {}
        self._stats: dict[str, QueueStats] = {}
        self._stats_ok = False
        self._stats_took = 0.0
        self._stats_task: asyncio.Task[None] | None = None
        self._background_stop = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self.post_message, methods=["POST"]),
                Route("/v1/messages:batch", self.post_batch, methods=["POST"]),
                Route("/v1/messages/batch", self.post_batch, methods=["POST"]),
                Route("/v1/messages/{id}", self.get_message, methods=["GET"]),
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/metrics", metrics_endpoint),
            ],
        )

    async def start(self) -> None:
        """Start refreshing queue statistics."""
        await self._refresh_stats()
        self._stats_task = asyncio.create_task(self._stats_loop(), name="api-stats")
        hooks = self.settings.webhooks
        if hooks.dispatch:
            stop = self._background_stop
            self._background = [
                asyncio.create_task(Dispatcher(self.store, hooks).run(stop), name="webhook-dispatcher"),
                asyncio.create_task(Sweeper(self.store, hooks).run(stop), name="sweeper"),
            ]

    async def close(self) -> None:
        """Stop background work."""
        self._background_stop.set()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._stats_task is not None:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stats_task

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(stats_pause(self.settings.stats_interval, self._stats_took))
            await self._refresh_stats()

    async def _refresh_stats(self) -> None:
        started = time.monotonic()
        try:
            self._stats = await self.store.queue_stats()
            self._stats_ok = True
            self._stats_took = time.monotonic() - started
        except Exception as exc:
            self._stats_ok = False
            log.warning("Queue stats unavailable error=%r", exc)
            return
        now = time.time()
        for tc in self.settings.rules.traffic_classes | set(self._stats):
            row = self._stats.get(tc)
            metrics.QUEUE_DEPTH.labels(traffic_class=tc).set(row.depth if row else 0)
            oldest = row.oldest_queued_at if row else None
            metrics.OLDEST_QUEUED_AGE.labels(traffic_class=tc).set(
                max(0.0, now - oldest.timestamp()) if oldest else 0.0
            )

    def _customer(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.settings.tokens.get(token_digest(token.strip()))

    async def _json(self, request: Request) -> tuple[object, JSONResponse | None]:
        if "application/json" not in request.headers.get("content-type", ""):
            return None, _error(415, "unsupported_media_type", "send application/json")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return None, _error(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
        try:
            return orjson.loads(body), None
        except orjson.JSONDecodeError:
            return None, _error(400, "invalid_json", "body is not valid JSON")

    def _overloaded(self, customer: str, messages: list[ValidMessage]) -> JSONResponse | None:
        limit = self.settings.max_queue_depth
        if limit is not None:
            for tc in {m.traffic_class for m in messages}:
                row = self._stats.get(tc)
                if row is not None and row.depth >= limit:
                    return _error(
                        429,
                        "queue_full",
                        f"traffic class {tc} has {row.depth} queued, limit {limit}",
                        headers={"Retry-After": "5"},
                    )
        rate = self.settings.customer_rate
        if rate is not None:
            # Each of several serving processes admits its share of a customer's rate.
            share = rate / self.settings.processes
            bucket = self._buckets.get(customer)
            if bucket is None:
                bucket = self._buckets[customer] = TokenBucket(share, burst=max(1.0, share))
            for _ in messages:
                if not bucket.try_acquire():
                    wait = max(1, math.ceil(len(messages) / share))
                    return _error(
                        429,
                        "rate_limited",
                        f"customer over {rate:g} messages/s",
                        headers={"Retry-After": str(wait)},
                    )
        return None

    async def _accept(self, request: Request, *, batch: bool) -> Response:
        customer = self._customer(request)
        if customer is None:
            return _error(
                401,
                "unauthorized",
                "a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        raw, problem = await self._json(request)
        if problem is not None:
            return problem
        rules = self.settings.rules
        hook = self.settings.webhooks.customers.get(customer)
        delivery = NO_DELIVERY if hook is None else hook.delivery
        try:
            if batch:
                messages = validate_batch(raw, rules, customer_id=customer, delivery=delivery)
            else:
                messages = [validate_message(raw, rules, customer_id=customer, delivery=delivery)]
        except ValidationFailed as exc:
            status = 403 if any(e.code == "forbidden" for e in exc.errors) else 422
            if any(e.code == "too_many" for e in exc.errors):
                status = 413
            return _error(status, "invalid", "the request has invalid fields", fields=exc.errors)
        overloaded = self._overloaded(customer, messages)
        if overloaded is not None:
            return overloaded
        try:
            results = await self.store.enqueue(messages)
        except StoreError as exc:
            log.error("Enqueue failed count=%d error=%r", len(messages), exc)
            return _error(
                503,
                "store_unavailable",
                "the queue cannot take writes right now",
                headers={"Retry-After": "1"},
            )
        created: dict[str, int] = {}
        for message, result in zip(messages, results, strict=True):
            if result.created:
                created[message.traffic_class] = created.get(message.traffic_class, 0) + 1
        for traffic_class, count in created.items():
            metrics.ACCEPTED.labels(traffic_class=traffic_class).inc(count)
        items = [{"id": r.id, "state": "queued", "duplicate": not r.created} for r in results]
        if batch:
            return _Json({"messages": items}, status_code=202)
        return _Json(items[0], status_code=202, headers={"Location": f"/v1/messages/{items[0]['id']}"})

    async def post_message(self, request: Request) -> Response:
        """POST /v1/messages."""
        return await self._accept(request, batch=False)

    async def post_batch(self, request: Request) -> Response:
        """POST /v1/messages:batch."""
        return await self._accept(request, batch=True)

    async def get_message(self, request: Request) -> Response:
        """GET /v1/messages/{id}: state and history of one of the caller's messages."""
        customer = self._customer(request)
        if customer is None:
            return _error(
                401,
                "unauthorized",
                "a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            view = await self.store.get(request.path_params["id"])
            if view is None or view.message.customer_id != customer:
                return _error(404, "not_found", "no such message")
            webhooks = await self.store.webhook_events(view.message.id)
        except StoreError:
            return _error(
                503, "store_unavailable", "the store cannot be read right now", headers={"Retry-After": "1"}
            )
        return JSONResponse(_view(view, webhooks))

    async def healthz(self, request: Request) -> Response:
        """Alive."""
        return JSONResponse({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        """Ready when the store answers."""
        try:
            await asyncio.wait_for(self.store.ping(), 2.0)
        except Exception as exc:
            return JSONResponse(
                {"ready": False, "missing": [f"store: {type(exc).__name__}"]}, status_code=503
            )
        return JSONResponse({"ready": True, "missing": []})


async def run_api(settings: ApiSettings, sock: socket.socket | None = None) -> None:
    """Serve the ingest API until SIGTERM (on `sock`, a listening socket, if given)."""
    stop = asyncio.Event()
    install_stop_signals(stop.set)
    store = await open_store(settings.store_url)
    api = IngestApi(store, settings)
    await api.start()
    http = HttpServer(api.app, settings.host, settings.port, sock=sock)
    await http.start()
    log.info("Ingest API serving port=%d customers=%d", settings.port, len(set(settings.tokens.values())))
    try:
        await stop.wait()
    finally:
        await http.stop()
        await api.close()
        await store.close()
        log.info("Ingest API stopped")
