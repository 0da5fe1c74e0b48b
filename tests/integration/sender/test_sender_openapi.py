"""The ingest API answers only what its OpenAPI document says, over real HTTP and a real store.

Every route, status and body the service gives is checked against
``docs/api/sender-openapi.json`` (the copy the service serves at ``/openapi.json``), and every
route the app serves is in the document.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from tests.plugins.openapi import Contract, routes_of
from tests.plugins.smsc import free_port, post_oversized

from tiergate.domain.messages import Rules
from tiergate.httpserver import HttpServer
from tiergate.sender.api import OPENAPI, IngestApi
from tiergate.sender.settings import ApiSettings, parse_tokens
from tiergate.store import Store

DOC = Path(__file__).parents[3] / "docs" / "api" / "sender-openapi.json"
RULES = Rules(traffic_classes=frozenset({"bulk"}), default_traffic_class="bulk", max_batch=5)
GOOD = {"destination": "+4915112345678", "sender_id": "Acme", "body": "hello"}
A = {"authorization": "Bearer tok-a"}
B = {"authorization": "Bearer tok-b"}
# Not provoked here: a store that refuses writes, and readiness without a store.
EXEMPT = {
    *{(p, "POST", "503") for p in ("/v1/messages", "/v1/messages:batch", "/v1/messages/batch")},
    ("/v1/messages/{id}", "GET", "503"),
    ("/readyz", "GET", "503"),
}


@contextlib.asynccontextmanager
async def serving(store: Store, **settings: object) -> AsyncIterator[tuple[IngestApi, str]]:
    api = IngestApi(
        store,
        ApiSettings(store_url="", tokens=parse_tokens("tok-a=cust-a,tok-b=cust-b"), rules=RULES, **settings),  # type: ignore[arg-type]
    )
    await api.start()
    port = free_port()
    http = HttpServer(api.app, "127.0.0.1", port)
    await http.start()
    try:
        yield api, f"http://127.0.0.1:{port}"
    finally:
        await http.stop()
        await api.close()


async def too_large(contract: Contract, url: str, path: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    for chunked in (True, False):
        raw = await asyncio.to_thread(post_oversized, port, path, "tok-a", 5, chunked=chunked)
        assert contract.check_raw("POST", url + path, raw).status_code == 413


def test_the_served_document_is_the_one_in_the_repository() -> None:
    assert DOC.resolve() == OPENAPI.resolve()


async def test_every_answer_is_documented_and_every_route_too(store: Store) -> None:
    contract = Contract(DOC)
    async with serving(store, customer_rate=12.0, max_queue_depth=None) as (api, url):
        assert routes_of(api.app.routes) == contract.operations()
        async with contract.client(url) as c:
            served = await c.get("/openapi.json")
            assert served.json() == json.loads(DOC.read_text())
            for probe in ("/healthz", "/readyz", "/metrics"):
                await c.get(probe)
            for path in ("/v1/messages:batch", "/v1/messages/batch"):
                ok = await c.post(path, json={"messages": [GOOD]}, headers=A)
                assert ok.status_code == 202
                await c.post(path, json={"messages": [GOOD] * 6}, headers=A)
                await c.post(path, json={"messages": [GOOD, {**GOOD, "body": ""}]}, headers=A)
                await c.post(path, json={"messages": [GOOD]})
                await c.post(path, json={"messages": [{**GOOD, "customer_id": "cust-b"}]}, headers=A)
                await c.post(path, content=b"{", headers={**A, "content-type": "application/json"})
                await c.post(path, content=b"x", headers={**A, "content-type": "text/plain"})
                await too_large(contract, url, path)
                await c.post(path, json={"messages": [{**GOOD, "idempotency_key": "k"}]}, headers=B)
                await c.post(
                    path, json={"messages": [{**GOOD, "body": "x", "idempotency_key": "k"}]}, headers=B
                )
            single = await c.post("/v1/messages", json=GOOD, headers=A)
            await c.post("/v1/messages", json={**GOOD, "body": ""}, headers=A)
            await c.post("/v1/messages", json=GOOD)
            await c.post("/v1/messages", json={**GOOD, "customer_id": "cust-b"}, headers=A)
            await c.post("/v1/messages", content=b"{", headers={**A, "content-type": "application/json"})
            await c.post("/v1/messages", content=b"x", headers={**A, "content-type": "text/plain"})
            await too_large(contract, url, "/v1/messages")
            await c.post("/v1/messages", json={**GOOD, "idempotency_key": "s"}, headers=B)
            await c.post("/v1/messages", json={**GOOD, "body": "y", "idempotency_key": "s"}, headers=B)
            await c.get(f"/v1/messages/{single.json()['id']}", headers=A)
            await c.get(f"/v1/messages/{single.json()['id']}", headers=B)
            await c.get("/v1/messages/nope")
            for path in ("/v1/messages", "/v1/messages:batch", "/v1/messages/batch"):
                for _ in range(20):
                    if (
                        await c.post(
                            path, json=GOOD if path == "/v1/messages" else {"messages": [GOOD] * 5}, headers=A
                        )
                    ).status_code == 429:
                        break
    async with serving(store, customer_rate=None, max_queue_depth=1) as (_, url), contract.client(url) as c:
        for path in ("/v1/messages", "/v1/messages:batch", "/v1/messages/batch"):
            body = GOOD if path == "/v1/messages" else {"messages": [GOOD]}
            assert (await c.post(path, json=body, headers=A)).status_code == 429
    assert contract.unseen(EXEMPT) == set()


def test_the_document_describes_batch_semantics_and_limits() -> None:
    info = json.loads(DOC.read_text())["info"]["description"]
    assert "all or nothing" in info
    assert "messages[i]" in info
