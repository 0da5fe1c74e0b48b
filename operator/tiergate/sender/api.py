"""The ingest API: validate, write durably, answer 202 with the message id.

Ingest depends only on the store: workers and the upstream may be down and messages still
queue. It answers 4xx naming the field for bad input, 401 for a bad token, 409 for an
idempotency key reused with another message, 413 for a body over `MAX_BODY_BYTES` (read no
further), 429 with Retry-After over the queue depth or a customer's rate, and 503 only when
the store itself cannot take the write. A batch is all or nothing: one bad item refuses it.
The contract is `openapi.json` beside this module, served at ``/openapi.json``.
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
from pathlib import Path
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
from tiergate.httpbody import BodyTooLarge, is_json, read_body
from tiergate.httpserver import HttpServer, install_stop_signals, metrics_endpoint, openapi_endpoint
from tiergate.sender import metrics
from tiergate.sender.ratelimit import TokenBucket
from tiergate.sender.settings import ApiSettings, token_digest
from tiergate.sender.webhooks import Dispatcher, Sweeper, event_of
from tiergate.store import (
    EnqueueResult,
    Message,
    MessageView,
    QueueStats,
    Store,
    StoreError,
    WebhookEvent,
    open_store,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
OPENAPI = Path(__file__).with_name("openapi.json")


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


def _same(stored: Message, new: ValidMessage) -> bool:
    return (
        stored.traffic_class,
        stored.destination,
        stored.sender_id,
        stored.body,
        stored.client_ref,
    ) == (new.traffic_class, new.destination, new.sender_id, new.body, new.client_ref)


class IngestApi:
    """The ASGI app of the ingest API over one store."""

    def __init__(self, store: Store, settings: ApiSettings) -> None:
        self.store = store
        self.settings = settings
        self._buckets: dict[str, TokenBucket] = {}
        self._stats: dict[str, QueueStats] = {}
        # What this process admitted that the last queue statistics may not count yet:
        # reserved (enqueue under way) and committed since that query started.
        self._reserved: dict[str, int] = {}
        self._committed: dict[str, int] = {}
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
                Route("/openapi.json", openapi_endpoint(OPENAPI), methods=["GET"]),
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
        counted = dict(self._committed)
        try:
            self._stats = await self.store.queue_stats()
            for tc, n in counted.items():
                self._committed[tc] -= n
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
        if not is_json(request):
            return None, _error(415, "unsupported_media_type", "send application/json")
        try:
            body = await read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge as exc:
            return None, _error(413, "too_large", str(exc), headers={"Connection": "close"})
        try:
            return orjson.loads(body), None
        except orjson.JSONDecodeError:
            return None, _error(400, "invalid_json", "body is not valid JSON")

    def _queue_full(self, counts: Mapping[str, int]) -> JSONResponse | None:
        """429 unless every traffic class has room for its messages; else reserve the room.

        The depth of the last statistics query plus what this process admitted since it
        started never passes the limit; with several processes each takes its share of the
        headroom.
        """
        limit = self.settings.max_queue_depth
        for tc, n in counts.items():
            if limit is None:
                break
            row = self._stats.get(tc)
            depth = row.depth if row is not None else 0
            mine = self._reserved.get(tc, 0) + self._committed.get(tc, 0)
            if mine + n > (limit - depth) / self.settings.processes:
                return _error(
                    429,
                    "queue_full",
                    f"traffic class {tc} has {depth + mine} queued, limit {limit}",
                    headers={"Retry-After": "5"},
                )
        for tc, n in counts.items():
            self._reserved[tc] = self._reserved.get(tc, 0) + n
        return None

    def _release(self, counts: Mapping[str, int], created: Mapping[str, int]) -> None:
        for tc, n in counts.items():
            self._reserved[tc] -= n
            self._committed[tc] = self._committed.get(tc, 0) + created.get(tc, 0)

    def _rate_limited(self, customer: str, count: int) -> JSONResponse | None:
        """429 unless the customer's bucket holds `count` tokens; a refusal takes none.

        Each of several serving processes admits its share of a customer's rate; the burst is
        at least the largest batch, so every valid batch fits once the bucket has refilled.
        """
        rate = self.settings.customer_rate
        if rate is None:
            return None
        bucket = self._buckets.get(customer)
        if bucket is None:
            share = rate / self.settings.processes
            burst = max(1.0, share, float(self.settings.rules.max_batch))
            bucket = self._buckets[customer] = TokenBucket(share, burst=burst)
        if bucket.try_acquire(count):
            return None
        wait = max(1, math.ceil(bucket.seconds_until(count)))
        return _error(
            429,
            "rate_limited",
            f"customer over {rate:g} messages/s",
            headers={"Retry-After": str(wait)},
        )

    async def _conflicts(
        self, messages: list[ValidMessage], results: list[EnqueueResult], *, batch: bool
    ) -> JSONResponse | None:
        """409 when an idempotency key came back stored for a different message."""
        errors: list[FieldError] = []
        for i, (m, r) in enumerate(zip(messages, results, strict=True)):
            if r.created or m.idempotency_key is None:
                continue
            view = await self.store.get(r.id)
            if view is None or _same(view.message, m):
                continue
            where = f"messages[{i}].idempotency_key" if batch else "idempotency_key"
            errors.append(
                FieldError(
                    where, "conflict", f"key {m.idempotency_key!r} was used for another message {r.id}"
                )
            )
        if not errors:
            return None
        return _error(
            409,
            "idempotency_conflict",
            "an idempotency key was reused with a different message",
            fields=tuple(errors),
        )

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
        counts: dict[str, int] = {}
        for m in messages:
            counts[m.traffic_class] = counts.get(m.traffic_class, 0) + 1
        full = self._queue_full(counts)
        if full is not None:
            return full
        limited = self._rate_limited(customer, len(messages))
        if limited is not None:
            self._release(counts, {})
            return limited
        results: list[EnqueueResult] = []
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
        finally:
            created: dict[str, int] = {}
            for message, result in zip(messages, results, strict=False):
                if result.created:
                    created[message.traffic_class] = created.get(message.traffic_class, 0) + 1
            self._release(counts, created)
        for traffic_class, count in created.items():
            metrics.ACCEPTED.labels(traffic_class=traffic_class).inc(count)
        try:
            conflict = await self._conflicts(messages, results, batch=batch)
        except StoreError:
            conflict = None
        if conflict is not None:
            return conflict
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
