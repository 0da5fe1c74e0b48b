"""The replay HTTP API over a real store (SQLite and PostgreSQL): filters, paging, counts,
auth and input errors, through real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from tests.plugins.replay import (
    ONCALL_TOKEN,
    READER_TOKEN,
    Clock,
    RunningReplay,
    Spec,
    StartReplay,
    seed,
)

from tiergate.replay.service import ReplayService
from tiergate.replay.settings import DEFAULT_MAX_RATE, replay_settings
from tiergate.store import DiscardFilter, NewReplayJob, Store

GROUPS = {
    "g1": (0, Spec(3, "acme", "bulk", "tier-a", "rev-1", "max-attempts")),
    "g2": (100, Spec(2, "globex", "otp", "tier-b", "rev-2", "rejected")),
    "g3": (200, Spec(4, "acme", "otp", "tier-b", "rev-2", "max-age")),
    "g4": (300, Spec(1, "initech", "bulk", "tier-a", "rev-1", "rejected")),
}


class Seeded:
    def __init__(self, t0: float, groups: dict[str, list[str]], replayed: str) -> None:
        self.t0 = t0
        self.groups = groups
        self.replayed = replayed

    def at(self, offset: float) -> str:
        return datetime.fromtimestamp(self.t0 + offset, UTC).isoformat()

    def of(self, *names: str) -> set[str]:
        return {m for name in names for m in self.groups[name]}


@pytest.fixture
async def seeded(replay_store: Store, replay_clock: Clock) -> Seeded:
    t0 = replay_clock.now
    groups: dict[str, list[str]] = {}
    for name, (offset, spec) in GROUPS.items():
        replay_clock.now = t0 + offset
        groups[name] = await seed(replay_store, spec)
    replay_clock.now = t0 + 400
    # The running service's engine runs this job too: its filter must match only what the
    # fixture claims, or the engine would replay every discard before a test looks.
    initech = DiscardFilter(customer_ids=("initech",))
    job = await replay_store.create_replay_job(NewReplayJob(filter=initech))
    page = await replay_store.list_discards(initech)
    await replay_store.claim_for_replay([page.items[0].id], job.id)
    return Seeded(t0, groups, page.items[0].message_id)


@pytest.fixture
async def api(replay_store: Store, start_replay: StartReplay) -> AsyncIterator[RunningReplay]:
    async with start_replay(replay_store) as running:
        yield running


def client(running: RunningReplay, token: str | None = ONCALL_TOKEN) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=running.url, headers=headers, timeout=10)


CASES = [
    ("everything", {}, ["g1", "g2", "g3", "g4"]),
    ("one customer", {"customer": "acme"}, ["g1", "g3"]),
    ("repeated customer", {"customer": ["acme", "initech"]}, ["g1", "g3", "g4"]),
    ("comma customers", {"customer": "acme,globex"}, ["g1", "g2", "g3"]),
    ("tier", {"tier": "tier-b"}, ["g2", "g3"]),
    ("revision", {"revision": "rev-1"}, ["g1", "g4"]),
    ("reason", {"reason": "rejected"}, ["g2", "g4"]),
    ("traffic class", {"traffic_class": "otp"}, ["g2", "g3"]),
    ("from", {"from": 50}, ["g2", "g3", "g4"]),
    ("to is exclusive", {"to": 200}, ["g1", "g2"]),
    ("window", {"from": 50, "to": 250}, ["g2", "g3"]),
    ("tier and reason", {"tier": "tier-b", "reason": "max-age"}, ["g3"]),
    ("tier and revision mismatch", {"tier": "tier-a", "revision": "rev-2"}, []),
    ("nobody", {"customer": "nobody"}, []),
]


@pytest.mark.parametrize(("name", "query", "groups"), CASES, ids=[c[0] for c in CASES])
async def test_filters_select_exactly_the_matching_discards(
    api: RunningReplay, seeded: Seeded, name: str, query: dict[str, object], groups: list[str]
) -> None:
    params: list[tuple[str, str]] = []
    for key, value in query.items():
        if key in ("from", "to"):
            params.append((key, seeded.at(float(value))))  # type: ignore[arg-type]
        elif isinstance(value, list):
            params.extend((key, v) for v in value)
        else:
            params.append((key, str(value)))
    async with client(api) as http:
        response = await http.get("/v1/discards", params=[*params, ("limit", "1000")])
    assert response.status_code == 200, response.text
    got = [item["message_id"] for item in response.json()["items"]]
    assert len(got) == len(set(got))
    assert set(got) == seeded.of(*groups)


async def test_replayed_filter_splits_claimed_from_unclaimed(api: RunningReplay, seeded: Seeded) -> None:
    async with client(api) as http:
        yes = (await http.get("/v1/discards", params={"replayed": "true"})).json()["items"]
        no = (await http.get("/v1/discards", params={"replayed": "false", "limit": 1000})).json()["items"]
    assert [i["message_id"] for i in yes] == [seeded.replayed]
    assert yes[0]["replay_job"] is not None
    assert {i["message_id"] for i in no} == seeded.of("g1", "g2", "g3", "g4") - {seeded.replayed}


async def test_cursor_pages_cover_everything_once_newest_first(api: RunningReplay, seeded: Seeded) -> None:
    seen: list[str] = []
    stamps: list[str] = []
    cursor = None
    async with client(api) as http:
        for _ in range(20):
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            body = (await http.get("/v1/discards", params=params)).json()
            seen.extend(i["message_id"] for i in body["items"])
            stamps.extend(i["discarded_at"] for i in body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
    assert len(seen) == len(set(seen)) == 10
    assert stamps == sorted(stamps, reverse=True)


async def test_counts_group_by_each_dimension(api: RunningReplay, seeded: Seeded) -> None:
    async with client(api) as http:
        by_reason = (
            await http.get("/v1/discards/counts", params={"group_by": "reason", "tier": "tier-b"})
        ).json()
        by_customer = (await http.get("/v1/discards/counts", params={"group_by": "customer"})).json()
        by_tc = (await http.get("/v1/discards/counts", params={"group_by": "traffic_class"})).json()
        by_rev = (await http.get("/v1/discards/counts", params={"group_by": "revision"})).json()
    assert by_reason["counts"] == {"max-age": 4, "rejected": 2}
    assert by_reason["total"] == 6
    assert by_customer["counts"] == {"acme": 7, "globex": 2, "initech": 1}
    assert by_tc["counts"] == {"bulk": 4, "otp": 6}
    assert by_rev["counts"] == {"rev-1": 4, "rev-2": 6}


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/discards", {"from": "yesterday"}, "from"),
        ("/v1/discards", {"to": "2024-13-01T00:00:00Z"}, "to"),
        ("/v1/discards", {"from": "2024-05-02T00:00:00Z", "to": "2024-05-01T00:00:00Z"}, "to"),
        ("/v1/discards", {"replayed": "maybe"}, "replayed"),
        ("/v1/discards", {"limit": "0"}, "limit"),
        ("/v1/discards", {"limit": "many"}, "limit"),
        ("/v1/discards", {"colour": "red"}, "colour"),
        ("/v1/discards", {"cursor": "%%%"}, "cursor"),
        ("/v1/discards/counts", {"group_by": "colour"}, "group_by"),
        ("/v1/replays", {"state": "sleeping"}, "state"),
    ],
)
async def test_bad_query_is_422_naming_the_field(
    api: RunningReplay, path: str, params: dict[str, str], field: str
) -> None:
    async with client(api) as http:
        response = await http.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filter": {"tier": 3}}, "filter.tier"),
        ({"filter": {"from": "soon"}}, "filter.from"),
        ({"filter": {"colour": "red"}}, "filter.colour"),
        ({"filter": []}, "filter"),
        ({"rate": -1}, "rate"),
        ({"rate": "fast"}, "rate"),
        ({"filter": {"tier": "tier-a"}, "rate": 1000}, "rate"),
        ({"max_age": "forever"}, "max_age"),
        ({"max_age": 0}, "max_age"),
        ({"dry_run": "perhaps"}, "dry_run"),
        ({"priority": 1}, "priority"),
        ({"filter": {}}, "filter"),
        ({}, "filter"),
        ({"filter": {"replayed": False}}, "filter"),
        ({"filter": {"tier": "tier-a"}, "all": True}, "all"),
        ({"all": "yes"}, "all"),
        ({"filter": {"tier": "tier-a"}, "dry_run": "yes"}, "dry_run"),
        ({"filter": {"tier": "tier-a"}, "dry_run": 1}, "dry_run"),
        ({"filter": {"tier": "tier-a"}, "allow_concurrent": "true"}, "allow_concurrent"),
    ],
)
async def test_bad_job_is_422_naming_the_field(
    replay_store: Store, start_replay: StartReplay, body: dict[str, object], field: str
) -> None:
    async with start_replay(replay_store, max_rate=500) as running, client(running) as http:
        response = await http.post("/v1/replays", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_every_discard_needs_all_true(api: RunningReplay) -> None:
    async with client(api) as http:
        response = await http.post("/v1/replays", json={"filter": {}, "all": True, "dry_run": True})
    assert response.status_code == 201, response.text
    assert response.json()["dry_run"] is True


async def test_the_rate_is_capped_by_default(replay_store: Store) -> None:
    settings = replay_settings(store_url="unused", env={"TIERGATE_REPLAY_TOKENS": "t=oncall"})
    service = ReplayService(replay_store, settings)
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(service.api.app),
        base_url="http://replay",
        headers={"Authorization": "Bearer t"},
    )
    async with api:
        huge = await api.post("/v1/replays", json={"filter": {"tier": "x"}, "rate": 1e308, "dry_run": True})
        unset = await api.post("/v1/replays", json={"filter": {"tier": "x"}, "dry_run": True})
    assert settings.max_rate == DEFAULT_MAX_RATE
    assert huge.status_code == 422
    assert huge.json()["error"]["field"] == "rate"
    assert unset.status_code == 201, unset.text
    assert unset.json()["effective_rate"] == DEFAULT_MAX_RATE


async def test_auth_is_its_own_token_and_role(api: RunningReplay) -> None:
    async with client(api, token=None) as anonymous:
        r = await anonymous.get("/v1/discards")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
    async with client(api, token="an-ingest-token") as stranger:
        assert (await stranger.get("/v1/replays")).status_code == 401
        assert (await stranger.post("/v1/replays", json={})).status_code == 401
    async with client(api, token=READER_TOKEN) as reader:
        assert (await reader.get("/v1/discards")).status_code == 200
        denied = await reader.post("/v1/replays", json={"filter": {}})
        assert denied.status_code == 403
        assert "read-only" in denied.json()["error"]["message"]
        assert (await reader.post("/v1/replays/x:cancel")).status_code == 403


async def test_job_actions_answer_404_and_409_clearly(api: RunningReplay) -> None:
    async with client(api) as http:
        assert (await http.get("/v1/replays/nope")).status_code == 404
        assert (await http.post("/v1/replays/nope:pause")).status_code == 404
        created = await http.post("/v1/replays", json={"filter": {"customer": "nobody"}})
        assert created.status_code == 201
        job_id = created.json()["id"]
        assert (await http.post(f"/v1/replays/{job_id}:explode")).status_code == 404
        for _ in range(100):
            if (await http.get(f"/v1/replays/{job_id}")).json()["state"] == "done":
                break
            await asyncio.sleep(0.05)
        conflict = await http.post(f"/v1/replays/{job_id}:pause")
        assert conflict.status_code == 409
        assert "done" in conflict.json()["error"]["message"]


async def test_probes_and_metrics(api: RunningReplay, seeded: Seeded) -> None:
    async with client(api, token=None) as http:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        for _ in range(100):
            text = (await http.get("/metrics")).text
            if 'tiergate_replay_discards{reason="max-age",replayed="false",tier="tier-b"} 4.0' in text:
                break
            await asyncio.sleep(0.05)
    assert 'tiergate_replay_discards{reason="max-age",replayed="false",tier="tier-b"} 4.0' in text
    assert 'tiergate_replay_discards{reason="rejected",replayed="true",tier="tier-a"} 1.0' in text
    assert "tiergate_replay_oldest_unreplayed_discard_age_seconds" in text
    assert "tiergate_replay_store_up 1.0" in text
