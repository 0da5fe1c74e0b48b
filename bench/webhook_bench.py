"""Webhook benchmark: outbox delivery rate with full durability, and what the outbox costs.

Prints one JSON document. Per engine: messages with a callback URL are driven through
submit and delivery receipt (two outbox events each, written by the store's triggers in the
transactions of the changes), then the dispatcher delivers the whole outbox to a receiver in
a separate process that checks every signature. ``delivery`` is events settled per second
from the first claim until the outbox is empty (each settled in the store, durably);
``state_changes`` compares lease+submit+receipt rates with and without a callback URL.

    .venv/bin/python bench/webhook_bench.py [--engines sqlite,postgresql] [--messages 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT), str(ROOT / "bench")]

from store_bench import DURABILITY, engine_url  # noqa: E402

from tiergate.domain.webhooks import RetrySchedule  # noqa: E402
from tiergate.sender.settings import CustomerWebhook, WebhookSettings  # noqa: E402
from tiergate.sender.webhooks import Dispatcher  # noqa: E402
from tiergate.store import (  # noqa: E402
    Encoding,
    NewMessage,
    ReceiptUpdate,
    Store,
    Submitted,
    WorkerIdentity,
    open_store,
)
from tiergate_kits.helpers import free_port  # noqa: E402

SECRET = "bench-secret-0123456789"
CHUNK = 500


def _receiver(port: int, count: Any, bad: Any) -> None:
    """The receiving process: verify each request's signature, count its events."""
    import orjson
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def hook(request: Request) -> Response:
        body = await request.body()
        parts = dict(item.split("=", 1) for item in request.headers["tiergate-signature"].split(","))
        mac = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, parts["v1"]):
            bad.value += 1
            return Response(status_code=400)
        count.value += len(orjson.loads(body)["events"])
        return Response(status_code=204)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _until_listening(url: str) -> None:
    """Wait for the receiver process to answer (it starts slowly on a busy machine)."""
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            try:
                await client.post(url, content=b"{}", headers={"tiergate-signature": "t=0,v1=0"})
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError("the receiver did not start")


def _msg(i: int, url: str | None) -> NewMessage:
    return NewMessage(
        customer_id="c",
        traffic_class="bulk",
        destination="+4915112345678",
        sender_id="ACME",
        body=f"Your code is {i:06d}",
        encoding=Encoding.GSM7,
        segments=1,
        callback_url=url,
    )


async def _drive(store: Store, total: int, url: str | None) -> float:
    """Enqueue, lease, submit and receipt `total` messages; the state-change rate per second."""
    for first in range(0, total, CHUNK):
        await store.enqueue([_msg(i, url) for i in range(first, min(total, first + CHUNK))])
    me = WorkerIdentity("bench", "tier-0", "rev")
    start = time.perf_counter()
    while leased := await store.lease("bulk", me, CHUNK, 60):
        await store.complete([Submitted(m.id, me.owner, "u" + m.id) for m in leased])
        await store.record_receipts([ReceiptUpdate("u" + m.id, True) for m in leased])
    return total / (time.perf_counter() - start)


async def _deliver(store: Store, url: str, batch: int, count: Any) -> dict[str, Any]:
    settings = WebhookSettings(
        customers={"c": CustomerWebhook(url, (SECRET,))},
        concurrency=32,
        batch=batch,
        schedule=RetrySchedule(base_delay=0.2, max_delay=1.0),
    )
    dispatcher = Dispatcher(store, settings)
    pending = (await store.webhook_backlog()).pending
    before = count.value
    stop = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.create_task(dispatcher.run(stop))
    while True:
        if not (await store.webhook_backlog()).pending:
            break
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - start
    stop.set()
    await task
    return {
        "events": pending,
        "events_per_request": batch,
        "received": count.value - before,
        "events_per_s": round(pending / wall),
        "seconds": round(wall, 2),
    }


async def _run(url: str, messages: int, hook: str, count: Any) -> dict[str, Any]:
    store = await open_store(url, pool_size=20)
    try:
        without = await _drive(store, messages, None)
        with_hook = await _drive(store, messages, hook)
        batched = await _deliver(store, hook, 100, count)
        await _drive(store, messages // 4, hook)
        single = await _deliver(store, hook, 1, count)
        return {
            "state_changes": {
                "messages_per_s_without_callback": round(without),
                "messages_per_s_with_callback": round(with_hook),
                "events_per_message": 2,
            },
            "delivery": batched,
            "delivery_one_event_per_request": single,
        }
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    count, bad = context.Value("q", 0), context.Value("q", 0)
    port = free_port()
    receiver = context.Process(target=_receiver, args=(port, count, bad), daemon=True)
    receiver.start()
    hook = f"http://127.0.0.1:{port}/hook"
    out: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "receiver": "a separate process on loopback, checking every signature",
        "results": {},
    }
    await _until_listening(hook)
    try:
        for engine in args.engines.split(","):
            async with engine_url(engine) as url:
                if url is None:
                    out["results"][engine] = {"skipped": "no PostgreSQL binaries"}
                    continue
                result = await _run(url, args.messages, hook, count)
                result["durability"] = DURABILITY[engine]
            out["results"][engine] = result
    finally:
        receiver.terminate()
        receiver.join()
    out["bad_signatures"] = bad.value - 1  # the readiness probe
    out["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
