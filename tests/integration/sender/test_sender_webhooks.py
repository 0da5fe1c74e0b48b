"""Delivery-status webhooks, validity, scheduled send and receipt timeout with real processes.

A receiver on loopback checks the signature of every request with the documented recipe.
Under kill -9 of the API (which runs the dispatcher) and of the workers, every state change
of every message reaches it at least once, each message's events in order; a receiver that
is down for a while gets everything once it is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.plugins.smsc import Proc, bulk_worker_env, eventually, free_port, wait_http
from tests.plugins.webhooks import WebhookReceiver, webhooks_config

from tiergate.domain.webhooks import event_type
from tiergate.store import MessageState, Store, open_store

FINAL = {MessageState.DELIVERED, MessageState.DISCARDED, MessageState.UNKNOWN, MessageState.FAILED}
EVENT_OF_HISTORY = {
    MessageState.SUBMITTED: "accepted",
    MessageState.DELIVERED: "delivered",
    MessageState.FAILED: "undeliverable",
    MessageState.UNKNOWN: "unknown",
}


class Stack:
    """An SMSC, an API and workers on one store, with the receiver as every customer's URL."""

    def __init__(
        self,
        spawn: Callable[..., Proc],
        store_url: str,
        receiver: WebhookReceiver,
        *,
        receipts: bool = True,
        api_env: dict[str, str] | None = None,
    ) -> None:
        self.spawn = spawn
        self.store_url = store_url
        self.smpp_port, self.stats_port, self.api_port = free_port(), free_port(), free_port()
        self.worker_ports = [free_port(), free_port()]
        smsc_args = ["--port", str(self.smpp_port), "--stats-port", str(self.stats_port)]
        smsc_args += ["--reject-prefix", "+49152"]
        if receipts:
            smsc_args.append("--receipts")
        spawn("smsc", *smsc_args, name="smsc")
        wait_http(f"http://127.0.0.1:{self.stats_port}/healthz")
        self.common = {
            "TIERGATE_STORE_URL": store_url,
            "TIERGATE_HTTP_HOST": "127.0.0.1",
            "TIERGATE_LOG_LEVEL": "WARNING",
        }
        self.api_env = {
            **self.common,
            "TIERGATE_HTTP_PORT": str(self.api_port),
            "TIERGATE_API_TOKENS": "tok=cust",
            "TIERGATE_TRAFFIC_CLASSES": "bulk,idle",
            "TIERGATE_WEBHOOKS": webhooks_config({"cust": receiver.url("cust")}),
            "TIERGATE_WEBHOOK_ALLOW_HTTP_LOOPBACK": "1",
            "TIERGATE_WEBHOOK_TIMEOUT": "1",
            "TIERGATE_WEBHOOK_RETRY_BASE": "0.2",
            "TIERGATE_WEBHOOK_RETRY_MAX_DELAY": "1",
            "TIERGATE_SWEEP_INTERVAL": "0.5",
            **(api_env or {}),
        }

    def api(self) -> Proc:
        """Start the ingest API (and with it the dispatcher and sweeper)."""
        proc = self.spawn("sender", "api", env=self.api_env, name="api")
        wait_http(f"http://127.0.0.1:{self.api_port}/healthz")
        return proc

    def worker(self, i: int) -> Proc:
        """Start worker `i` of tier bulk."""
        return self.spawn(
            "sender",
            "worker",
            name=f"worker{i}",
            env=bulk_worker_env(self.common, self.worker_ports[i], self.smpp_port),
        )

    def client(self) -> httpx.AsyncClient:
        """A client of the API as customer ``cust``."""
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.api_port}", headers={"authorization": "Bearer tok"}, timeout=30
        )


async def _settled(store: Store, ids: list[str], within: float) -> None:
    """Wait until every message is final and its outbox is empty."""
    deadline = time.monotonic() + within
    while True:
        pending = 0
        for id_ in ids:
            view = await store.get(id_)
            assert view is not None, f"accepted message {id_} vanished"
            if view.message.state not in FINAL:
                pending += 1
        backlog = await store.webhook_backlog()
        if pending == 0 and backlog.pending == 0:
            return
        assert time.monotonic() < deadline, f"{pending} messages not final, {backlog.pending} events pending"
        await asyncio.sleep(0.5)


async def _check_every_change_arrived(store: Store, ids: list[str], receiver: WebhookReceiver) -> None:
    """Each message's history, its outbox and what the receiver got agree, in order."""
    received = {e["id"] for e in receiver.events}
    for id_ in ids:
        view = await store.get(id_)
        assert view is not None
        expected = [EVENT_OF_HISTORY[h.state] for h in view.history if h.state in EVENT_OF_HISTORY]
        if view.message.state is MessageState.DISCARDED:
            expected.append("discarded")
        rows = await store.webhook_events(id_)
        assert [event_type(r.state, r.reason).value for r in rows] == expected, id_
        assert all(r.status == "sent" for r in rows), id_
        assert {f"ev_{r.seq}" for r in rows} <= received, id_
        assert receiver.kinds(id_) == expected, id_


@pytest.mark.slow
async def test_every_state_change_reaches_the_receiver_through_kill_9(
    spawn: Callable[..., Proc], engine_url: str, webhook_receiver: WebhookReceiver
) -> None:
    # Receipts of submits made by a killed worker go to its dead session: the receipt timeout
    # ends those messages in unknown, with their event.
    stack = Stack(spawn, engine_url, webhook_receiver, api_env={"TIERGATE_RECEIPT_TIMEOUT": "8s"})
    api = stack.api()
    workers = [stack.worker(0), stack.worker(1)]
    total, batch = 2000, 25
    accepted: dict[str, str] = {}

    async def load(client: httpx.AsyncClient) -> None:
        for first in range(0, total, batch):
            messages = [
                {
                    "destination": "+4915212345678" if i % 10 == 0 else "+4915112345678",
                    "sender_id": "Acme",
                    "body": f"hook {i}",
                    "idempotency_key": f"k{i}",
                }
                for i in range(first, first + batch)
            ]
            while True:
                try:
                    response = await client.post("/v1/messages:batch", json={"messages": messages})
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
                    continue
                if response.status_code == 202:
                    for m, r in zip(messages, response.json()["messages"], strict=True):
                        accepted[m["idempotency_key"]] = r["id"]
                    await asyncio.sleep(0.1)
                    break
                await asyncio.sleep(0.05)

    async def chaos() -> None:
        nonlocal api, workers
        await eventually(lambda: len(webhook_receiver.events) > 100, within=30)
        assert len(accepted) < total, "the load finished before the kills: make it slower"
        api.kill9()
        for w in workers:
            w.kill9()
        await asyncio.sleep(0.3)
        api = stack.api()
        workers = [stack.worker(0), stack.worker(1)]
        await asyncio.sleep(1.5)
        api.kill9()
        api = stack.api()

    async with stack.client() as client:
        await asyncio.gather(chaos(), load(client))
    ids = list(accepted.values())
    assert len(set(ids)) == total
    store = await open_store(engine_url)
    try:
        await _settled(store, ids, within=120)
        await _check_every_change_arrived(store, ids, webhook_receiver)
    finally:
        await store.close()
    assert webhook_receiver.bad_signatures == 0
    print(
        "webhook crash report",
        {"events": len(webhook_receiver.events), "unique": webhook_receiver.unique_events},
    )
    assert api.terminate() == 0


async def test_a_receiver_down_for_a_while_gets_everything_after_it_returns(
    spawn: Callable[..., Proc], engine_url: str, webhook_receiver: WebhookReceiver
) -> None:
    stack = Stack(spawn, engine_url, webhook_receiver)
    api = stack.api()
    stack.worker(0)
    async with stack.client() as client:
        await webhook_receiver.stop()
        response = await client.post(
            "/v1/messages:batch",
            json={
                "messages": [
                    {"destination": "+4915112345678", "sender_id": "Acme", "body": f"down {i}"}
                    for i in range(200)
                ]
            },
        )
        assert response.status_code == 202
        ids = [m["id"] for m in response.json()["messages"]]
        store = await open_store(engine_url)
        try:

            async def tried_twice() -> bool:
                return any(w.attempts >= 2 for w in await store.webhook_events(ids[-1]))

            await eventually(tried_twice, within=60)
            assert webhook_receiver.events == []
            await webhook_receiver.start()
            await _settled(store, ids, within=60)
            await _check_every_change_arrived(store, ids, webhook_receiver)
        finally:
            await store.close()
        view = (await client.get(f"/v1/messages/{ids[0]}")).json()
    hooks = view["webhooks"]
    assert [h["type"] for h in hooks] == ["accepted", "delivered"]
    assert all(h["status"] == "sent" and h["sent_at"] for h in hooks)
    assert hooks[0]["attempts"] >= 2
    assert webhook_receiver.bad_signatures == 0
    assert api.terminate() == 0


async def test_validity_scheduled_send_and_receipt_timeout(
    spawn: Callable[..., Proc], engine_url: str, webhook_receiver: WebhookReceiver
) -> None:
    stack = Stack(
        spawn, engine_url, webhook_receiver, receipts=False, api_env={"TIERGATE_RECEIPT_TIMEOUT": "3s"}
    )
    api = stack.api()
    stack.worker(0)
    base = {"destination": "+4915112345678", "sender_id": "Acme"}
    send_at = datetime.now(UTC) + timedelta(seconds=3)
    async with stack.client() as client:

        async def post(**fields: Any) -> str:
            response = await client.post("/v1/messages", json={**base, **fields})
            assert response.status_code == 202, response.text
            return str(response.json()["id"])

        bad = await client.post("/v1/messages", json={**base, "body": "x", "validity": "forever"})
        assert bad.status_code == 422
        assert bad.json()["error"]["fields"][0]["field"] == "validity"
        expiring = await post(body="no worker serves idle", traffic_class="idle", validity="1s")
        scheduled = await post(body="later", send_at=send_at.isoformat(), validity="1h")
        plain = await post(body="now")
        await asyncio.sleep(1.5)
        early = (await client.get(f"/v1/messages/{scheduled}")).json()
        assert early["state"] == "queued"
        store = await open_store(engine_url)
        try:
            await _settled(store, [expiring, scheduled, plain], within=60)
        finally:
            await store.close()
        views = {i: (await client.get(f"/v1/messages/{i}")).json() for i in (expiring, scheduled, plain)}
    assert views[expiring]["state"] == "discarded"
    assert views[expiring]["last_error"] == "expired"
    assert webhook_receiver.kinds(expiring) == ["expired"]
    assert datetime.fromisoformat(views[scheduled]["submitted_at"]) >= send_at
    assert views[scheduled]["validity_until"] is not None
    for id_ in (scheduled, plain):
        assert views[id_]["state"] == "unknown"
        assert views[id_]["last_error"] == "receipt-timeout"
        assert webhook_receiver.kinds(id_) == ["accepted", "unknown"]
        assert [h["status"] for h in views[id_]["webhooks"]] == ["sent", "sent"]
    assert webhook_receiver.bad_signatures == 0
    assert api.terminate() == 0
