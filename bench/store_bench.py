"""Store benchmark: durable ingest (single and batch) and lease+ack rates, both engines.

Prints one JSON document. SQLite runs on a temporary file (WAL, synchronous=FULL);
PostgreSQL uses TIERGATE_BENCH_POSTGRES_DSN, or starts a throwaway local server with the
test plugin's harness (Debian's binaries, default fsync/synchronous_commit=on).

    .venv/bin/python bench/store_bench.py [--engines sqlite,postgresql] [--messages 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from tiergate.store import (
    Encoding,
    NewMessage,
    Store,
    Submitted,
    WorkerIdentity,
    open_store,
)


def _msg(i: int) -> NewMessage:
    return NewMessage(
        customer_id=f"c{i % 5000}",
        traffic_class="bulk",
        destination="+447700900123",
        sender_id="ACME",
        body="Your code is 123456, valid for 10 minutes.",
        encoding=Encoding.GSM7,
        segments=1,
        idempotency_key=f"k{i}" if i % 2 else None,
    )


def _pct(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 3),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1] * 1000, 3),
    }


async def _single(store: Store, total: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def caller() -> None:
        for i in counter:
            t = time.perf_counter()
            await store.enqueue([_msg(i)])
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return {"messages": total, "callers": concurrency, "msg_per_s": round(total / wall), **_pct(latencies)}


async def _batch(store: Store, total: int, size: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    counter = iter(range(0, total, size))
    offset = 10_000_000

    async def caller() -> None:
        for start in counter:
            batch = [_msg(offset + i) for i in range(start, min(start + size, total))]
            t = time.perf_counter()
            await store.enqueue(batch)
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return {
        "messages": total,
        "batch_size": size,
        "callers": concurrency,
        "msg_per_s": round(total / wall),
        **_pct(latencies),
    }


async def _lease_ack(store: Store, size: int, workers: int) -> dict[str, Any]:
    latencies: list[float] = []
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        me = WorkerIdentity(f"w{n}", "tier-0", "rev")
        while True:
            t = time.perf_counter()
            leased = await store.lease("bulk", me, size, 60)
            if not leased:
                return
            await store.complete([Submitted(m.id, me.owner, "u" + m.id) for m in leased])
            latencies.append(time.perf_counter() - t)
            done += len(leased)

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(workers)))
    wall = time.perf_counter() - start
    return {
        "messages": done,
        "lease_size": size,
        "workers": workers,
        "msg_per_s": round(done / wall),
        **{k.replace("_ms", "_round_ms"): v for k, v in _pct(latencies).items()},
    }


async def _run(url: str, messages: int) -> dict[str, Any]:
    store = await open_store(url, pool_size=20)
    try:
        single = await _single(store, min(messages, 30_000), 1000)
        single_low = await _single(store, 2_000, 10)
        batch = await _batch(store, messages, 500, 1)
        batch_par = await _batch(store, messages, 500, 4)
        lease = await _lease_ack(store, 500, 4)
        return {
            "enqueue_single_1000_callers": single,
            "enqueue_single_10_callers": single_low,
            "enqueue_batch_500": batch,
            "enqueue_batch_500_x4": batch_par,
            "lease_and_ack": lease,
            "group_commits": store.counters.group_commits,
            "grouped_requests": store.counters.grouped_requests,
        }
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def engine_url(engine: str) -> AsyncIterator[str | None]:
    """A fresh store URL of `engine` (None: no PostgreSQL binaries), removed afterwards.

    SQLite: a temporary file. PostgreSQL: TIERGATE_BENCH_POSTGRES_DSN, or a new database on
    a throwaway local server started with the test plugin's harness.
    """
    if engine == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite://{tmp}/bench.db"
        return
    dsn = os.environ.get("TIERGATE_BENCH_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    from tiergate_kits.postgres import LocalPostgres, postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        yield None
        return
    server = LocalPostgres(bindir)
    admin = server.start()
    try:
        import asyncpg

        name = f"bench_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(admin)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        server.stop()


DURABILITY = {
    "sqlite": "WAL, synchronous=FULL, group commit",
    "postgresql": "fsync=on, synchronous_commit=on, group commit",
}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    out: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "results": {},
    }
    for engine in args.engines.split(","):
        async with engine_url(engine) as url:
            if url is None:
                out["results"][engine] = {"skipped": "no PostgreSQL binaries"}
                continue
            result = await _run(url, args.messages)
            result["durability"] = DURABILITY[engine]
        out["results"][engine] = result
    out["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
