"""Sender benchmark: ingest rate (single and batch) and end-to-end rate and latency, as JSON.

Runs the real processes (ingest API, tier workers, the smpp34 test SMSC) on loopback over a
fresh store, then prints one JSON document. Usage::

    python bench/sender_bench.py [--store-url URL] [--messages N] [--workers W] [--out FILE]

Without ``--store-url`` a SQLite file in a temporary directory is used; pass a
``postgresql://`` URL (an empty database) to measure PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from tiergate.store import MessageState, open_store

TIERGATE = str(Path(sys.executable).parent / "tiergate")
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TIERGATE_")}
    full.update(env)
    return subprocess.Popen([TIERGATE, *args], env=full, stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def wait_up(url: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(url)


def message(i: int, tag: str) -> dict[str, str]:
    return {
        "destination": f"+49151{10000000 + i % 89999999:08d}",
        "sender_id": "Bench",
        "body": f"{tag} {i} your code is {i % 999999:06d}",
    }


async def ingest_single(port: int, n: int, concurrency: int, tag: str) -> dict[str, Any]:
    """Single-message POSTs over raw keep-alive HTTP/1.1 (httpx itself caps near 150/s here)."""
    latencies: list[float] = []
    counter = iter(range(n))

    async def run() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in counter:
            body = json.dumps(message(i, tag)).encode()
            head = (
                f"POST /v1/messages HTTP/1.1\r\nHost: bench\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            t = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            answer = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in answer.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            if not answer.startswith(b"HTTP/1.1 202"):
                raise RuntimeError(answer.decode(errors="replace"))
            latencies.append(time.perf_counter() - t)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*[run() for _ in range(concurrency)])
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "messages": n,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "msg_per_s": round(n / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99) - 1], 2),
    }


async def ingest_batch(
    base: str, n: int, batch: int, concurrency: int, tag: str
) -> tuple[dict[str, Any], list[str]]:
    ids: list[str] = []
    async with httpx.AsyncClient(
        base_url=base, headers={"authorization": f"Bearer {TOKEN}"}, timeout=60
    ) as client:
        starts = iter(range(0, n, batch))

        async def run() -> None:
            for first in starts:
                body = {"messages": [message(i, tag) for i in range(first, min(n, first + batch))]}
                r = await client.post("/v1/messages:batch", json=body)
                r.raise_for_status()
                ids.extend(m["id"] for m in r.json()["messages"])

        started = time.perf_counter()
        await asyncio.gather(*[run() for _ in range(concurrency)])
        elapsed = time.perf_counter() - started
    return (
        {
            "messages": n,
            "batch": batch,
            "concurrency": concurrency,
            "seconds": round(elapsed, 3),
            "msg_per_s": round(n / elapsed, 1),
        },
        ids,
    )


async def end_to_end(base: str, store_url: str, n: int, tag: str) -> dict[str, Any]:
    started = time.time()
    result, ids = await ingest_batch(base, n, 200, 4, tag)
    store = await open_store(store_url)
    try:
        deadline = time.monotonic() + 600
        pending = list(ids)
        done: dict[str, float] = {}
        while pending and time.monotonic() < deadline:
            still = []
            for id_ in pending:
                view = await store.get(id_)
                assert view is not None
                m = view.message
                if m.state in (MessageState.SUBMITTED, MessageState.DELIVERED) and m.submitted_at:
                    done[id_] = (m.submitted_at - m.created_at).total_seconds()
                elif m.state is MessageState.DISCARDED:
                    done[id_] = float("nan")
                else:
                    still.append(id_)
            pending = still
            if pending:
                await asyncio.sleep(0.5)
        last = 0.0
        for id_ in ids:
            view = await store.get(id_)
            if view is not None and view.message.submitted_at is not None:
                last = max(last, view.message.submitted_at.timestamp())
    finally:
        await store.close()
    lat = sorted(v for v in done.values() if v == v)
    return {
        "messages": n,
        "ingest_msg_per_s": result["msg_per_s"],
        "completed": len(lat),
        "unfinished": len(pending),
        "seconds": round(last - started, 3),
        "msg_per_s": round(len(lat) / (last - started), 1) if last > started else 0,
        "latency_p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
        "latency_p99_ms": round(1000 * lat[int(len(lat) * 0.99) - 1], 1) if lat else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store-url")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--single", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--out")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tiergate-bench-"))
    store_url = args.store_url or f"sqlite://{tmp / 'bench.db'}"
    smpp, stats, api_port = free_port(), free_port(), free_port()
    env = {
        "TIERGATE_STORE_URL": store_url,
        "TIERGATE_HTTP_HOST": "127.0.0.1",
        "TIERGATE_LOG_LEVEL": "WARNING",
    }
    procs = [
        start(
            ["sender", "smsc", "--port", str(smpp), "--stats-port", str(stats), "--receipts"],
            env,
            tmp / "smsc.log",
        )
    ]
    api = start(
        ["sender", "api"],
        {
            **env,
            "TIERGATE_HTTP_PORT": str(api_port),
            "TIERGATE_API_TOKENS": f"{TOKEN}=bench",
            "TIERGATE_TRAFFIC_CLASSES": "bulk",
        },
        tmp / "api.log",
    )
    procs.append(api)
    base = f"http://127.0.0.1:{api_port}"
    report: dict[str, Any] = {
        "engine": store_url.split(":", 1)[0],
        "cpus": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(),
    }
    try:
        await wait_up(f"http://127.0.0.1:{stats}/healthz")
        await wait_up(f"{base}/healthz")
        report["ingest_single"] = await ingest_single(api_port, args.single, 64, "single")
        report["ingest_batch"], _ = await ingest_batch(base, args.messages, 1000, 2, "batch")
        workers = []
        for i in range(args.workers):
            port = free_port()
            workers.append(
                start(
                    ["sender", "worker"],
                    {
                        **env,
                        "TIERGATE_TIER": "bulk",
                        "TIERGATE_REVISION": "bench",
                        "TIERGATE_HTTP_PORT": str(port),
                        "TIERGATE_WINDOW": str(args.window),
                        "TIERGATE_UPSTREAM_URL": f"smpp://127.0.0.1:{smpp}",
                    },
                    tmp / f"worker{i}.log",
                )
            )
            await wait_up(f"http://127.0.0.1:{port}/healthz")
        procs.extend(workers)
        # drain the backlog left by the ingest runs before timing end to end
        backlog_start = time.time()
        store = await open_store(store_url)
        try:
            while True:
                stats_now = await store.queue_stats()
                if sum(s.depth for s in stats_now.values()) == 0:
                    break
                await asyncio.sleep(0.5)
        finally:
            await store.close()
        backlog = args.messages + args.single
        report["drain_backlog"] = {
            "messages": backlog,
            "seconds": round(time.time() - backlog_start, 2),
            "msg_per_s": round(backlog / (time.time() - backlog_start), 1),
        }
        report["end_to_end"] = await end_to_end(base, store_url, args.messages, "e2e")
        report["rss_mib"] = {"api": rss_mib(api.pid), "workers": [rss_mib(w.pid) for w in workers]}
        async with httpx.AsyncClient() as client:
            report["smsc"] = (await client.get(f"http://127.0.0.1:{stats}/stats")).json()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")  # noqa: ASYNC240
    print(text)


if __name__ == "__main__":
    asyncio.run(main())
