"""Several upstream connectors under load: TPS contracts, throttling, failover, prefix routing.

Real processes: each SMSC is a ``tiergate smsc`` process (smpp34's server) driven over
its HTTP switches, the worker is a ``tiergate sender worker`` process reading a connectors
file, and the test writes the backlog straight into a SQLite store. Rates are read from the
SMSCs' own 100 ms timelines over windows of several seconds, after the worker has ramped up.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.plugins.smsc import Proc, SmscProc, wait_http
from tests.plugins.upstream import (
    Feeder,
    connectors_file,
    enqueue,
    first_accept,
    message,
    start_worker,
    until_drained,
)

from tiergate.store import MessageState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# How long after an SMSC dies its traffic is on the survivor, at most (README "Failover").
FAILOVER_WITHIN = 2.0


async def get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(f"http://127.0.0.1:{port}{path}")


async def test_worker_sustains_the_smsc_cap_with_almost_no_throttling(
    smscs: Callable[..., SmscProc], spawn: Callable[..., Proc], tmp_path: Path, sqlite_url: str
) -> None:
    smsc = smscs("capped", "--throttle-rate", "500")
    await enqueue(sqlite_url, [message(i) for i in range(8000)])
    config = connectors_file(tmp_path, {"name": "carrier", "url": smsc.url, "tps": 500, "binds": 2})
    start_worker(spawn, tmp_path, sqlite_url, config)
    begin = await first_accept(smsc) + 2.0
    await asyncio.sleep(begin + 8.0 - time.time())
    rate = smsc.accepted_rate(begin, begin + 8.0)
    throttled = smsc.throttled_between(begin, begin + 8.0)
    assert rate >= 0.95 * 500, f"{rate:.0f} msg/s against a cap of 500"
    assert throttled < 0.01 * rate * 8.0, f"{throttled} throttled of {rate * 8:.0f}"


async def test_two_connectors_are_each_held_to_their_own_cap(
    smscs: Callable[..., SmscProc], spawn: Callable[..., Proc], tmp_path: Path, sqlite_url: str
) -> None:
    a = smscs("a", "--throttle-rate", "300")
    b = smscs("b", "--throttle-rate", "200")
    await enqueue(sqlite_url, [message(i) for i in range(8000)])
    config = connectors_file(
        tmp_path,
        {"name": "a", "url": a.url, "tps": 300, "binds": 2},
        {"name": "b", "url": b.url, "tps": 200, "binds": 1},
    )
    start_worker(spawn, tmp_path, sqlite_url, config)
    begin = max(await first_accept(a), await first_accept(b)) + 2.0
    await asyncio.sleep(begin + 8.0 - time.time())
    for smsc, cap in ((a, 300), (b, 200)):
        rate = smsc.accepted_rate(begin, begin + 8.0)
        throttled = smsc.throttled_between(begin, begin + 8.0)
        assert 0.95 * cap <= rate <= 1.02 * cap, f"{smsc.name}: {rate:.0f} msg/s against a cap of {cap}"
        assert throttled < 0.01 * rate * 8.0, f"{smsc.name}: {throttled} throttled"


async def test_a_one_second_throttle_burst_costs_about_two_seconds(
    smscs: Callable[..., SmscProc], spawn: Callable[..., Proc], tmp_path: Path, sqlite_url: str
) -> None:
    # The single-URL form (one connector, "default"): the form the 2**streak pause was found in.
    smsc = smscs("bursty", "--throttle-rate", "500")
    ids = await enqueue(sqlite_url, [message(i) for i in range(7000)])
    worker, _ = start_worker(
        spawn, tmp_path, sqlite_url, None, TIERGATE_UPSTREAM_URL=smsc.url, TIERGATE_UPSTREAM_RATE="500"
    )
    await asyncio.sleep(await first_accept(smsc) + 3.0 - time.time())
    smsc.switch(throttle=True)
    await asyncio.sleep(1.0)
    smsc.switch(throttle=False)
    recovered = time.time()
    await asyncio.sleep(3.2)
    after = smsc.accepted_rate(recovered + 2.0, recovered + 3.0)
    assert after >= 0.9 * 500, f"{after:.0f} msg/s 2-3 s after the SMSC recovered"
    # The whole burst is one episode: one warning, then one recovery that counts its throttles
    # (a loaded machine may add a later episode of a few throttles: it is logged on its own).
    log = worker.output()
    first = log.split("Connector rate recovered connector=default", 1)
    assert len(first) == 2, log[-3000:]
    assert first[0].count("Connector throttled, rate lowered connector=default") == 1, log[-3000:]
    throttles = int(re.match(r" rate=\d+ throttles=(\d+)", first[1]).group(1))  # type: ignore[union-attr]
    assert throttles >= 100, log[-3000:]
    counts = await until_drained(sqlite_url, ids)
    assert counts == {"submitted": 7000}, counts


async def test_failover_when_an_smsc_dies_and_back_when_it_returns(
    smscs: Callable[..., SmscProc], spawn: Callable[..., Proc], tmp_path: Path, sqlite_url: str
) -> None:
    a, b = smscs("a"), smscs("b")
    config = connectors_file(
        tmp_path,
        {"name": "a", "url": a.url, "tps": 400, "binds": 2},
        {"name": "b", "url": b.url, "tps": 400, "binds": 2},
    )
    start_worker(spawn, tmp_path, sqlite_url, config)
    offered = 300.0
    with Feeder(sqlite_url, offered) as feeder:
        await first_accept(a)
        await asyncio.sleep(await first_accept(b) + 3.0 - time.time())
        before = b.accepted_rate(time.time() - 2.0, time.time())
        killed = time.time()
        a.kill()
        await asyncio.sleep(FAILOVER_WITHIN + 2.2)
        # What a carried moved to b: b now carries (nearly) all of the offered load.
        after = b.accepted_rate(killed + FAILOVER_WITHIN, killed + FAILOVER_WITHIN + 2.0)
        a.restart()
        restarted = time.time()
        back = await first_accept(a, within=20.0)
        await asyncio.sleep(back + 3.2 - time.time())
        shared = a.accepted_rate(back + 1.0, back + 3.0), b.accepted_rate(back + 1.0, back + 3.0)
        ids = await feeder.stopped()
    assert before < 0.7 * offered, f"b carried {before:.0f} of {offered:.0f} msg/s before the kill"
    assert after >= 0.85 * offered, f"b carried {after:.0f} of {offered:.0f} msg/s after the kill"
    assert back - restarted < 15.0
    assert min(shared) >= 0.2 * offered, f"a and b carried {shared} msg/s after a's restart"
    counts = await until_drained(sqlite_url, ids)
    assert counts == {"submitted": len(ids)}, counts


async def test_each_destination_reaches_only_the_connectors_that_serve_it(
    smsc_pool: Callable[..., Any], spawn: Callable[..., Proc], tmp_path: Path, sqlite_url: str
) -> None:
    de, uk, rest = await smsc_pool(), await smsc_pool(), await smsc_pool()
    german = [message(i, "+4915100000000") for i in range(300)]
    british = [message(i, "+447400000000") for i in range(300)]
    french = [message(i, "+33600000000") for i in range(300)]
    ids = await enqueue(sqlite_url, german + british + french)
    config = connectors_file(
        tmp_path,
        {"name": "de", "url": f"smpp://127.0.0.1:{de.port}", "prefixes": ["+49"]},
        {"name": "uk", "url": f"smpp://127.0.0.1:{uk.port}", "prefixes": ["+44"]},
        {"name": "rest", "url": f"smpp://127.0.0.1:{rest.port}", "failover": 1},
    )
    _, port = start_worker(spawn, tmp_path, sqlite_url, config)
    await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/readyz", 30.0, 200)
    counts = await until_drained(sqlite_url, ids, within=60)
    assert counts == {"submitted": 900}, counts
    assert de.stats.per_key and all(k.startswith("49") for k in de.stats.per_key)
    assert uk.stats.per_key and all(k.startswith("44") for k in uk.stats.per_key)
    assert len(rest.stats.per_key) == 300
    assert all(k.startswith("33") for k in rest.stats.per_key)
    # The catch-all connector also serves +49; with both down, +49 and the rest are unserved.
    await de.bring_down()
    await rest.bring_down()
    missing: list[str] = []
    for _ in range(100):
        response = await get(port, "/readyz")
        missing = response.json()["missing"]
        if response.status_code == 503:
            break
        await asyncio.sleep(0.1)
    assert missing == ["upstream: not bound", "upstream: not bound for +49"]
    metrics = (await get(port, "/metrics")).text
    assert 'tiergate_sender_connector_binds_bound{connector="de",revision="r1",tier="bulk"} 0.0' in metrics
    assert 'tiergate_sender_connector_binds_bound{connector="uk",revision="r1",tier="bulk"} 1.0' in metrics


async def test_a_failing_connector_is_skipped_and_probed_back(
    smscs: Callable[..., SmscProc], spawn: Callable[..., Proc], tmp_path: Path, sqlite_url: str
) -> None:
    a, b = smscs("a"), smscs("b")
    ids = await enqueue(sqlite_url, [message(i) for i in range(4000)])
    config = connectors_file(
        tmp_path,
        {"name": "a", "url": a.url, "tps": 200},
        {"name": "b", "url": b.url, "tps": 200},
    )
    a.switch(reject_all=True)
    worker, port = start_worker(spawn, tmp_path, sqlite_url, config)
    await first_accept(b)
    await asyncio.sleep(2.0)
    # The breaker's threshold (5) and the submits already in flight (at most a bind's window).
    assert a.stats()["rejected"] <= 5 + 64
    assert "Connector circuit opened connector=a" in worker.output()
    metrics = (await get(port, "/metrics")).text
    assert 'tiergate_sender_connector_circuit_open{connector="a",revision="r1",tier="bulk"} 1.0' in metrics
    a.switch(reject_all=False)
    back = await first_accept(a, within=15.0)
    await asyncio.sleep(back + 2.0 - time.time())
    assert a.accepted_rate(back + 0.5, back + 2.0) >= 0.9 * 200
    assert "Connector circuit closed connector=a" in worker.output()
    counts = await until_drained(sqlite_url, ids)
    assert counts == {"submitted": 4000}, counts
    assert MessageState.DISCARDED.value not in counts
