"""The ingest API over a real SQLite store: bad input refused and nothing stored, 202s kept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tiergate.domain.messages import Rules
from tiergate.sender.api import IngestApi
from tiergate.sender.settings import ApiSettings, api_settings, parse_tokens
from tiergate.store import Store

TOKENS = "tok-a=cust-a,tok-b=cust-b"
RULES = Rules(
    traffic_classes=frozenset({"bulk", "otp"}), default_traffic_class="bulk", max_segments=3, max_batch=5
)
GOOD = {"destination": "+4915112345678", "sender_id": "Acme", "body": "hello"}
AUTH = {"authorization": "Bearer tok-a"}


async def client_for(store: Store, **settings: object) -> tuple[IngestApi, httpx.AsyncClient]:
    settings.setdefault("rules", RULES)
    api = IngestApi(store, ApiSettings(store_url="", tokens=parse_tokens(TOKENS), **settings))  # type: ignore[arg-type]
    await api.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(api.app), base_url="http://api")
    return api, client


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    api, client = await client_for(store)
    async with client:
        yield client
    await api.close()


BAD = [
    # (name, path, headers, body, status, field)
    ("no token", "/v1/messages", {}, GOOD, 401, None),
    ("bad token", "/v1/messages", {"authorization": "Bearer nope"}, GOOD, 401, None),
    ("basic auth", "/v1/messages", {"authorization": "Basic dG9rLWE6"}, GOOD, 401, None),
    ("not json", "/v1/messages", AUTH, b"{nope", 400, None),
    ("not an object", "/v1/messages", AUTH, ["x"], 422, ""),
    ("bad number", "/v1/messages", AUTH, {**GOOD, "destination": "0151 1234"}, 422, "destination"),
    (
        "number not E.164 +",
        "/v1/messages",
        AUTH,
        {**GOOD, "destination": "4915112345678"},
        422,
        "destination",
    ),
    ("unassigned number", "/v1/messages", AUTH, {**GOOD, "destination": "+999123456789"}, 422, "destination"),
    ("number as int", "/v1/messages", AUTH, {**GOOD, "destination": 4915112345678}, 422, "destination"),
    ("missing destination", "/v1/messages", AUTH, {"sender_id": "Acme", "body": "x"}, 422, "destination"),
    ("empty body", "/v1/messages", AUTH, {**GOOD, "body": ""}, 422, "body"),
    ("too many segments", "/v1/messages", AUTH, {**GOOD, "body": "x" * 500}, 422, "body"),
    ("too many UCS-2 segments", "/v1/messages", AUTH, {**GOOD, "body": "й" * 210}, 422, "body"),
    ("long sender id", "/v1/messages", AUTH, {**GOOD, "sender_id": "TwelveChars!"}, 422, "sender_id"),
    ("numeric sender id too long", "/v1/messages", AUTH, {**GOOD, "sender_id": "1" * 16}, 422, "sender_id"),
    ("unknown field", "/v1/messages", AUTH, {**GOOD, "priority": 1}, 422, "priority"),
    ("unknown traffic class", "/v1/messages", AUTH, {**GOOD, "traffic_class": "vip"}, 422, "traffic_class"),
    ("other customer", "/v1/messages", AUTH, {**GOOD, "customer_id": "cust-b"}, 403, "customer_id"),
    ("client ref too long", "/v1/messages", AUTH, {**GOOD, "client_ref": "r" * 65}, 422, "client_ref"),
    ("idempotency key blank", "/v1/messages", AUTH, {**GOOD, "idempotency_key": ""}, 422, "idempotency_key"),
    ("oversized batch", "/v1/messages:batch", AUTH, {"messages": [GOOD] * 6}, 413, "messages"),
    ("empty batch", "/v1/messages:batch", AUTH, {"messages": []}, 422, "messages"),
    (
        "one bad in batch",
        "/v1/messages:batch",
        AUTH,
        {"messages": [GOOD, GOOD, {**GOOD, "body": ""}]},
        422,
        "messages[2].body",
    ),
    ("batch not a list", "/v1/messages:batch", AUTH, {"messages": GOOD}, 422, "messages"),
]


@pytest.mark.parametrize(("name", "path", "headers", "body", "status", "field"), BAD, ids=[b[0] for b in BAD])
async def test_bad_input_is_refused_and_nothing_stored(
    client: httpx.AsyncClient,
    store: Store,
    name: str,
    path: str,
    headers: dict[str, str],
    body: object,
    status: int,
    field: str | None,
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post(
        path, content=content, headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"]
    if field is not None:
        assert field in [f["field"] for f in error["fields"]]
    assert await store.queue_stats() == {}


async def test_wrong_content_type(client: httpx.AsyncClient, store: Store) -> None:
    response = await client.post("/v1/messages", content=b"x", headers=AUTH)
    assert response.status_code == 415
    assert await store.queue_stats() == {}


async def test_accepted_message_is_stored_and_readable(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", json={**GOOD, "client_ref": "c-1"}, headers=AUTH)
    assert response.status_code == 202
    id_ = response.json()["id"]
    assert response.headers["location"] == f"/v1/messages/{id_}"
    got = await client.get(f"/v1/messages/{id_}", headers=AUTH)
    assert got.status_code == 200
    body = got.json()
    assert (body["state"], body["customer_id"], body["traffic_class"]) == ("queued", "cust-a", "bulk")
    assert body["history"][0]["state"] == "queued"
    other = await client.get(f"/v1/messages/{id_}", headers={"authorization": "Bearer tok-b"})
    assert other.status_code == 404


async def test_idempotency_key_never_creates_a_second_message(
    client: httpx.AsyncClient, store: Store
) -> None:
    first = await client.post("/v1/messages", json={**GOOD, "idempotency_key": "k1"}, headers=AUTH)
    again = await client.post("/v1/messages", json={**GOOD, "idempotency_key": "k1"}, headers=AUTH)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.json()["duplicate"] is True
    stats = await store.queue_stats()
    assert stats["bulk"].queued == 1


async def test_batch_is_accepted_in_order(client: httpx.AsyncClient, store: Store) -> None:
    response = await client.post(
        "/v1/messages:batch",
        json={"messages": [GOOD, {**GOOD, "traffic_class": "otp", "body": "Привет"}]},
        headers=AUTH,
    )
    assert response.status_code == 202
    ids = [m["id"] for m in response.json()["messages"]]
    assert len(set(ids)) == 2
    second = (await client.get(f"/v1/messages/{ids[1]}", headers=AUTH)).json()
    assert (second["traffic_class"], second["encoding"]) == ("otp", "ucs2")


async def test_queue_depth_limit_answers_429_with_retry_after(store: Store) -> None:
    api, client = await client_for(store, max_queue_depth=3)
    async with client:
        for _ in range(3):
            assert (await client.post("/v1/messages", json=GOOD, headers=AUTH)).status_code == 202
        await api._refresh_stats()
        over = await client.post("/v1/messages", json=GOOD, headers=AUTH)
        assert over.status_code == 429
        assert int(over.headers["retry-after"]) > 0
        other = await client.post("/v1/messages", json={**GOOD, "traffic_class": "otp"}, headers=AUTH)
        assert other.status_code == 202
    await api.close()
    assert (await store.queue_stats())["bulk"].queued == 3


async def test_each_of_several_processes_admits_its_share_of_a_customer_rate(store: Store) -> None:
    api, client = await client_for(store, customer_rate=20.0, processes=2)
    async with client:
        codes = [
            (await client.post("/v1/messages:batch", json={"messages": [GOOD] * 5}, headers=AUTH)).status_code
            for _ in range(4)
        ]
    await api.close()
    # Share 10/s, burst 10: two batches of five, then refused.
    assert codes[:2] == [202, 202]
    assert codes[2:] == [429, 429]


async def test_customer_rate_limit_answers_429(store: Store) -> None:
    api, client = await client_for(store, customer_rate=2.0)
    async with client:
        codes = [(await client.post("/v1/messages", json=GOOD, headers=AUTH)).status_code for _ in range(7)]
        other = await client.post("/v1/messages", json=GOOD, headers={"authorization": "Bearer tok-b"})
    await api.close()
    # The burst is the largest batch (5), so five single messages pass at once.
    assert codes[:5] == [202] * 5
    assert 429 in codes[5:]
    assert other.status_code == 202


BIG_RULES = Rules(traffic_classes=frozenset({"bulk"}), default_traffic_class="bulk", max_batch=1000)


def _batch(n: int, tag: str) -> dict[str, object]:
    return {"messages": [{**GOOD, "body": f"{tag} {i}"} for i in range(n)]}


async def test_a_batch_over_the_rate_is_admitted_and_a_refused_one_takes_no_tokens(store: Store) -> None:
    api, client = await client_for(store, customer_rate=500.0, rules=BIG_RULES)
    async with client:
        whole = await client.post("/v1/messages:batch", json=_batch(1000, "a"), headers=AUTH)
        refused = await client.post("/v1/messages:batch", json=_batch(600, "b"), headers=AUTH)
        api._buckets["cust-a"]._tokens = 400.0
        again = await client.post("/v1/messages:batch", json=_batch(600, "c"), headers=AUTH)
        small = await client.post("/v1/messages:batch", json=_batch(50, "d"), headers=AUTH)
    await api.close()
    assert whole.status_code == 202, whole.text
    assert refused.status_code == again.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) == 2
    assert small.status_code == 202, "the refused 600 took the tokens of the 50"
    assert (await store.queue_stats())["bulk"].queued == 1050


async def test_with_default_settings_an_overload_gets_429_with_retry_after(store: Store) -> None:
    settings = api_settings(store_url="", env={"TIERGATE_API_TOKENS": TOKENS})
    api = IngestApi(store, settings)
    await api.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(api.app), base_url="http://api") as client:
        codes = []
        for round_ in range(3):
            response = await client.post("/v1/messages:batch", json=_batch(1000, f"r{round_}"), headers=AUTH)
            codes.append(response.status_code)
    await api.close()
    assert codes[0] == 202
    assert 429 in codes
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("processes", [1, 2])
async def test_queue_depth_limit_is_hard_between_refreshes(store: Store, processes: int) -> None:
    limit = 40
    apis = [
        await client_for(
            store, max_queue_depth=limit, customer_rate=None, processes=processes, stats_interval=60.0
        )
        for _ in range(processes)
    ]
    try:

        async def post(i: int) -> int:
            _, client = apis[i % processes]
            return (
                await client.post("/v1/messages", json={**GOOD, "body": f"q {i}"}, headers=AUTH)
            ).status_code

        codes = await asyncio.gather(*[post(i) for i in range(150)])
        for api, _ in apis:
            await api._refresh_stats()
        later = await asyncio.gather(*[post(i) for i in range(150, 200)])
    finally:
        for api, client in apis:
            await client.aclose()
            await api.close()
    accepted = (await store.queue_stats())["bulk"].queued
    assert codes.count(202) + later.count(202) == accepted
    assert accepted <= limit
    assert 429 in codes


CONTENT_TYPES = [
    ("application/json", 202),
    ("application/json; charset=utf-8", 202),
    ("Application/JSON", 202),
    ("text/plain; x=application/json", 415),
    ("application/jsonx", 415),
    ("application/json-patch+json", 415),
    ("", 415),
]


@pytest.mark.parametrize(("content_type", "status"), CONTENT_TYPES)
async def test_content_type_is_parsed_as_a_media_type(
    client: httpx.AsyncClient, store: Store, content_type: str, status: int
) -> None:
    response = await client.post(
        "/v1/messages", content=json.dumps(GOOD).encode(), headers={**AUTH, "content-type": content_type}
    )
    assert response.status_code == status, response.text
    assert len(await store.queue_stats()) == (1 if status == 202 else 0)


async def test_idempotency_key_reused_with_another_message_is_a_conflict(
    client: httpx.AsyncClient, store: Store
) -> None:
    first = await client.post("/v1/messages", json={**GOOD, "idempotency_key": "k1"}, headers=AUTH)
    other = await client.post(
        "/v1/messages", json={**GOOD, "body": "changed", "idempotency_key": "k1"}, headers=AUTH
    )
    same = await client.post("/v1/messages", json={**GOOD, "idempotency_key": "k1"}, headers=AUTH)
    batch = await client.post(
        "/v1/messages:batch",
        json={
            "messages": [{**GOOD, "idempotency_key": "k2"}, {**GOOD, "body": "x", "idempotency_key": "k1"}]
        },
        headers=AUTH,
    )
    assert first.status_code == 202
    assert other.status_code == 409, other.text
    error = other.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert [f["field"] for f in error["fields"]] == ["idempotency_key"]
    assert "'k1'" in error["fields"][0]["message"]
    assert first.json()["id"] in error["fields"][0]["message"]
    assert (same.status_code, same.json()["id"], same.json()["duplicate"]) == (202, first.json()["id"], True)
    assert batch.status_code == 409
    assert [f["field"] for f in batch.json()["error"]["fields"]] == ["messages[1].idempotency_key"]
    view = await store.get(first.json()["id"])
    assert view is not None
    assert view.message.body == "hello"
