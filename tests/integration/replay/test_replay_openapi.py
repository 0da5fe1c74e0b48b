"""The replay API answers only what its OpenAPI document says, over real HTTP and a real store.

Every route, status and body is checked against ``docs/api/replay-openapi.json`` (the copy
served at ``/openapi.json``), and every route the app serves is in the document.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.plugins.openapi import Contract, routes_of
from tests.plugins.replay import ONCALL_TOKEN, READER_TOKEN, StartReplay
from tests.plugins.smsc import post_oversized

from tiergate.replay.service import OPENAPI
from tiergate.store import Store

DOC = Path(__file__).parents[3] / "docs" / "api" / "replay-openapi.json"
ONCALL = {"authorization": f"Bearer {ONCALL_TOKEN}"}
READER = {"authorization": f"Bearer {READER_TOKEN}"}
EXEMPT = {
    *{
        (path, method, "503")
        for path, method in [
            ("/v1/discards", "GET"),
            ("/v1/discards/counts", "GET"),
            ("/v1/replays", "POST"),
            ("/v1/replays", "GET"),
            ("/v1/replays/{id}", "GET"),
            ("/v1/replays/{id}:{action}", "POST"),
            ("/v1/replays/{id}/{action}", "POST"),
            ("/readyz", "GET"),
        ]
    },
    # Another job on the same traffic class must still be running when the second starts.
    ("/v1/replays", "POST", "409"),
}


def test_the_served_document_is_the_one_in_the_repository() -> None:
    assert DOC.resolve() == OPENAPI.resolve()


async def test_every_answer_is_documented_and_every_route_too(
    replay_store: Store, start_replay: StartReplay
) -> None:
    contract = Contract(DOC)
    async with start_replay(replay_store, max_rate=500) as running:
        assert routes_of(running.service.api.app.routes) == contract.operations()
        async with contract.client(running.url) as c:
            assert (await c.get("/openapi.json")).json() == json.loads(DOC.read_text())
            for probe in ("/healthz", "/readyz", "/metrics"):
                await c.get(probe)
            for path in ("/v1/discards", "/v1/discards/counts", "/v1/replays"):
                await c.get(path, headers=READER)
                await c.get(path)
                await c.get(path, params={"limit": "0", "group_by": "colour", "state": "x"}, headers=READER)
            created = await c.post(
                "/v1/replays", json={"filter": {"tier": "t"}, "dry_run": True}, headers=ONCALL
            )
            job = created.json()["id"]
            await c.post("/v1/replays", json={"filter": {}}, headers=ONCALL)
            await c.post("/v1/replays", json={"filter": {"tier": "t"}}, headers=READER)
            await c.post("/v1/replays", json={"filter": {"tier": "t"}})
            await c.post("/v1/replays", content=b"{", headers={**ONCALL, "content-type": "application/json"})
            await c.post("/v1/replays", content=b"{}", headers={**ONCALL, "content-type": "text/plain"})
            port = int(running.url.rsplit(":", 1)[1])
            for chunked in (True, False):
                raw = await asyncio.to_thread(
                    post_oversized, port, "/v1/replays", ONCALL_TOKEN, 2, chunked=chunked
                )
                contract.check_raw("POST", running.url + "/v1/replays", raw)
            for path in (f"/v1/replays/{job}", "/v1/replays/nope"):
                await c.get(path, headers=READER)
                await c.get(path)
            for sep in (":", "/"):
                for _ in range(100):
                    if (await c.get(f"/v1/replays/{job}", headers=READER)).json()["state"] == "done":
                        break
                    await asyncio.sleep(0.05)
                await c.post(f"/v1/replays/{job}{sep}pause", headers=ONCALL)
                await c.post(f"/v1/replays/nope{sep}pause", headers=ONCALL)
                await c.post(f"/v1/replays/{job}{sep}pause", headers=READER)
                await c.post(f"/v1/replays/{job}{sep}pause")
                running_job = await c.post(
                    "/v1/replays", json={"filter": {"tier": f"none{sep}"}, "rate": 1}, headers=ONCALL
                )
                await c.post(f"/v1/replays/{running_job.json()['id']}{sep}cancel", headers=ONCALL)
    assert contract.unseen(EXEMPT) == set()
