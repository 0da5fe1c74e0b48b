"""Sender benchmark: durable ingest (single and batch), worker drain and end to end, as JSON.

Runs the real processes (ingest API, tier workers, the smpp34 test SMSC) on loopback over a
fresh store, then prints one JSON document. Usage::

    python bench/sender_bench.py [--engine sqlite|postgresql] [--runs 3] [--api-processes 2] [--out FILE]

SQLite uses a file in a temporary directory (WAL, synchronous=FULL). PostgreSQL uses
``--store-url`` (an empty database) or ``TIERGATE_BENCH_POSTGRES_DSN``, else a throwaway
local server started with the test harness (Debian's binaries, fsync and
synchronous_commit on).

What is measured, so the numbers can be judged:

- Every phase uses destinations never seen before by the API process (numbers from four
  countries), so no validation cache helps.
- Request bodies are encoded before the clock starts and sent over raw keep-alive HTTP/1.1
  (an httpx client costs more CPU than the server on two cores); the client still shares the
  machine with the servers.
- Batch ingest posts ``--batch-messages`` (100,000) in requests of 1,000 over
  ``--batch-connections`` (8) keep-alive connections, as several clients would.
- ``--api-processes`` runs the API with TIERGATE_API_PROCESSES (SO_REUSEPORT: the kernel
  spreads connections by address hash, so a run can land unevenly); its CPU and memory
  figures include every serving process.
- ``paced`` sends ``--paced-rate`` (1,000/s, half of the target) for 10 s in batches of 10
  and reports accept-to-``submit_sm_resp`` latency below capacity; ``end_to_end`` floods,
  so its latency is mostly time queued.
- ``drain`` times the workers alone on a backlog; ``end_to_end`` ingests while the workers
  send, and counts a message done when its ``submit_sm_resp`` was recorded in the store;
  its latency is ``submitted_at - created_at`` from the store.
- ``drain`` runs from the first recorded submit to the last; its CPU figures include the
  workers' start-up.
- CPU milliseconds per 1,000 messages of each process, per phase, are reported next to the
  rates (``total`` sums them; ``workers`` sums the workers): unlike the rates they hardly
  depend on what else runs on the machine. The load average is recorded before every run.
- ``--workers`` worker processes share the tier (as replicas would). On two cores one is
  the most efficient: a second worker spends more CPU per message (smaller leases, more
  commits contending for the one SQLite writer) and only helps when a core is idle.
- ``--event-loop`` sets TIERGATE_EVENT_LOOP for every process (``auto``: uvloop if
  installed). Durability is never traded: SQLite ``synchronous=FULL``, PostgreSQL
  ``synchronous_commit=on``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tiergate.domain.messages import slow_destination
from tiergate.store import MessageState, open_store
from tiergate_kits.helpers import free_port

TIERGATE = str(Path(sys.executable).parent / "tiergate")
TOKEN = "bench-token"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
COUNTRIES = ("+49151{:08d}", "+447400{:06d}", "+1201{:07d}", "+336{:08d}")
PHASE_OFFSET = {"single": 0, "batch": 10_000_000, "e2e": 20_000_000, "paced": 30_000_000}


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """Live descendants of a process (an API's serving processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError):
                continue
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out.extend(kids)
        todo.extend(kids)
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its live descendants."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            fields = _stat(p)
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def rss_mib(pid: int) -> float:
    """Resident memory of a process and of its live descendants."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


def destination(i: int) -> str:
    pattern = COUNTRIES[i % len(COUNTRIES)]
    n = i // len(COUNTRIES)
    if pattern.startswith("+1201"):
        return pattern.format(2_000_000 + n % 7_999_999)
    if pattern.startswith("+447400"):
        return pattern.format(n % 1_000_000)
    return pattern.format(n % 100_000_000)


def message(i: int, tag: str) -> dict[str, str]:
    n = PHASE_OFFSET[tag] + i
    return {
        "destination": destination(n),
        "sender_id": "Bench",
        "body": f"{tag} {i} your code is {n % 999999:06d}",
    }


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


class CpuMeter:
    """CPU time of named processes between `start` and `stop`."""

    def __init__(self, procs: dict[str, subprocess.Popen[bytes]]) -> None:
        self.procs = procs
        self._at: dict[str, float] = {}

    def start(self) -> None:
        self._at = {name: cpu_seconds(p.pid) for name, p in self.procs.items()}

    def per_1k(self, messages: int) -> dict[str, float]:
        each = {
            name: round(1000 * 1000 * (cpu_seconds(p.pid) - self._at[name]) / messages, 1)
            for name, p in self.procs.items()
        }
        workers = [v for name, v in each.items() if name.startswith("worker")]
        if len(workers) > 1:
            each["workers"] = round(sum(workers), 1)
        each["total"] = round(sum(v for name, v in each.items() if name != "workers"), 1)
        return each


def request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def post_all(port: int, requests: Iterator[tuple[bytes, int]], concurrency: int) -> list[float]:
    """Send pre-encoded requests on `concurrency` keep-alive connections; latency of each."""
    latencies: list[float] = []

    async def run() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for data, _count in requests:
            t = time.perf_counter()
            writer.write(data)
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

    await asyncio.gather(*[run() for _ in range(concurrency)])
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def timed_posts(
    port: int, bodies: list[tuple[bytes, int]], concurrency: int, cpu: CpuMeter
) -> tuple[float, list[float]]:
    """POST prepared requests with CPU metering started; (seconds taken, request latencies)."""
    cpu.start()
    started = time.perf_counter()
    latencies = await post_all(port, iter(bodies), concurrency)
    return time.perf_counter() - started, latencies


async def ingest_single(port: int, n: int, concurrency: int, cpu: CpuMeter) -> dict[str, Any]:
    """Single-message POSTs."""
    bodies = [(request("/v1/messages", json.dumps(message(i, "single")).encode()), 1) for i in range(n)]
    elapsed, latencies = await timed_posts(port, bodies, concurrency, cpu)
    return {
        "messages": n,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "msg_per_s": round(n / elapsed, 1),
        "p50_ms": round(1000 * pct(latencies, 0.5), 2),
        "p99_ms": round(1000 * pct(latencies, 0.99), 2),
        "cpu_ms_per_1k": cpu.per_1k(n),
    }


def batches(n: int, size: int, tag: str) -> list[tuple[bytes, int]]:
    out = []
    for first in range(0, n, size):
        items = [message(i, tag) for i in range(first, min(n, first + size))]
        out.append((request("/v1/messages:batch", json.dumps({"messages": items}).encode()), len(items)))
    return out


async def ingest_batch(port: int, n: int, size: int, concurrency: int, cpu: CpuMeter) -> dict[str, Any]:
    """Batch POSTs."""
    elapsed, latencies = await timed_posts(port, batches(n, size, "batch"), concurrency, cpu)
    return {
        "messages": n,
        "batch": size,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "msg_per_s": round(n / elapsed, 1),
        "request_p50_ms": round(1000 * pct(latencies, 0.5), 2),
        "request_p99_ms": round(1000 * pct(latencies, 0.99), 2),
        "cpu_ms_per_1k": cpu.per_1k(n),
    }


async def wait_empty(store_url: str, within: float = 900) -> float:
    """Wait until nothing is queued or in flight; the time it happened."""
    store = await open_store(store_url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            stats = await store.queue_stats()
            if sum(s.depth for s in stats.values()) == 0:
                return time.time()
            await asyncio.sleep(0.1)
    finally:
        await store.close()
    raise TimeoutError("queue did not drain")


async def drain(store_url: str, backlog: int, cpu: CpuMeter) -> dict[str, Any]:
    """Time the workers on the backlog the ingest phases left, first submit to last."""
    await wait_empty(store_url)
    first, last = await submitted_span(store_url)
    seconds = last - first
    return {
        "messages": backlog,
        "seconds": round(seconds, 2),
        "msg_per_s": round(backlog / seconds, 1),
        "cpu_ms_per_1k": cpu.per_1k(backlog),
    }


async def end_to_end(port: int, store_url: str, n: int, cpu: CpuMeter) -> dict[str, Any]:
    """Ingest in batches of 200 while the workers send; done = submit_sm_resp recorded."""
    bodies = batches(n, 200, "e2e")
    cpu.start()
    started = time.time()
    t = time.perf_counter()
    await post_all(port, iter(bodies), 4)
    ingest_rate = n / (time.perf_counter() - t)
    await wait_empty(store_url)
    cpu_use = cpu.per_1k(n)
    latencies, states, last = await outcomes_since(store_url, started)
    seconds = last - started
    return {
        "messages": n,
        "ingest_msg_per_s": round(ingest_rate, 1),
        "states": states,
        "seconds": round(seconds, 3),
        "msg_per_s": round(len(latencies) / seconds, 1) if seconds > 0 else 0,
        **latency_summary(latencies),
        "cpu_ms_per_1k": cpu_use,
    }


async def paced(port: int, store_url: str, rate: float, seconds: float) -> dict[str, Any]:
    """End-to-end latency below capacity: batches of 10 at `rate` messages/s on 2 connections."""
    n = int(rate * seconds) // 10 * 10
    bodies = batches(n, 10, "paced")
    interval = 2 * 10 / rate  # each connection sends every `interval` seconds
    started = time.time()

    async def connection(mine: list[tuple[bytes, int]], offset: float) -> list[float]:
        begin = time.perf_counter() + offset
        taken: list[float] = []
        for k, body in enumerate(mine):
            await asyncio.sleep(max(0.0, begin + k * interval - time.perf_counter()))
            taken.extend(await post_all(port, iter([body]), 1))
        return taken

    halves = await asyncio.gather(connection(bodies[0::2], 0.0), connection(bodies[1::2], interval / 2))
    requests = [x for half in halves for x in half]
    await wait_empty(store_url)
    latencies, states, _ = await outcomes_since(store_url, started)
    return {
        "messages": n,
        "set_rate_per_s": rate,
        "states": states,
        **latency_summary(latencies),
        "request_p50_ms": round(1000 * statistics.median(requests), 2),
        "request_p99_ms": round(1000 * pct(requests, 0.99), 2),
    }


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
    return {
        "latency_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "latency_p99_ms": round(1000 * pct(latencies, 0.99), 1) if latencies else None,
    }


async def outcomes_since(store_url: str, started: float) -> tuple[list[float], dict[str, int], float]:
    """Accept-to-submit_sm_resp latencies, states, and the last submit of messages created since."""
    store = await open_store(store_url)
    latencies: list[float] = []
    last = started
    states: dict[str, int] = {}
    try:
        for id_ in await created_since(store_url, started):
            view = await store.get(id_)
            assert view is not None
            m = view.message
            states[m.state.value] = states.get(m.state.value, 0) + 1
            if m.state in (MessageState.SUBMITTED, MessageState.DELIVERED) and m.submitted_at:
                latencies.append((m.submitted_at - m.created_at).total_seconds())
                last = max(last, m.submitted_at.timestamp())
    finally:
        await store.close()
    return latencies, states, last


async def submitted_span(store_url: str) -> tuple[float, float]:
    """Times of the first and the last submit recorded in the store."""
    if store_url.startswith("sqlite://"):
        import sqlite3

        with sqlite3.connect(store_url.removeprefix("sqlite://")) as conn:
            row = conn.execute("SELECT MIN(submitted_at), MAX(submitted_at) FROM messages").fetchone()
        return float(row[0]), float(row[1])
    import asyncpg

    conn = await asyncpg.connect(store_url)
    try:
        row = await conn.fetchrow(
            "SELECT EXTRACT(EPOCH FROM MIN(submitted_at))::float8 AS a,"
            " EXTRACT(EPOCH FROM MAX(submitted_at))::float8 AS b FROM messages"
        )
    finally:
        await conn.close()
    return float(row["a"]), float(row["b"])


async def created_since(store_url: str, since: float) -> list[str]:
    """Ids of the messages created at or after `since` (read straight from the database)."""
    if store_url.startswith("sqlite://"):
        import sqlite3

        with sqlite3.connect(store_url.removeprefix("sqlite://")) as conn:
            rows = conn.execute("SELECT id FROM messages WHERE created_at >= ?", (since,)).fetchall()
        return [r[0] for r in rows]
    import asyncpg

    conn = await asyncpg.connect(store_url)
    try:
        rows = await conn.fetch("SELECT id FROM messages WHERE created_at >= to_timestamp($1)", since)
    finally:
        await conn.close()
    return [r["id"] for r in rows]


async def run_once(args: argparse.Namespace, store_url: str, tmp: Path) -> dict[str, Any]:
    smpp, stats, api_port = free_port(), free_port(), free_port()
    env = {
        "TIERGATE_STORE_URL": store_url,
        "TIERGATE_HTTP_HOST": "127.0.0.1",
        "TIERGATE_LOG_LEVEL": "WARNING",
        "TIERGATE_EVENT_LOOP": args.event_loop,
    }
    smsc = start(
        ["smsc", "--port", str(smpp), "--stats-port", str(stats), "--receipts"],
        env,
        tmp / "smsc.log",
    )
    api = start(
        ["sender", "api"],
        {
            **env,
            "TIERGATE_HTTP_PORT": str(api_port),
            "TIERGATE_API_TOKENS": f"{TOKEN}=bench",
            "TIERGATE_TRAFFIC_CLASSES": "bulk",
            "TIERGATE_API_PROCESSES": str(args.api_processes),
            # Capacity is measured: the overload limits (on by default) are switched off.
            "TIERGATE_CUSTOMER_RATE": "0",
            "TIERGATE_MAX_QUEUE_DEPTH": "0",
        },
        tmp / "api.log",
    )
    procs = [smsc, api]
    report: dict[str, Any] = {"load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        await wait_up(f"http://127.0.0.1:{stats}/healthz")
        await wait_up(f"http://127.0.0.1:{api_port}/healthz")
        cpu = CpuMeter({"api": api})
        report["ingest_single"] = await ingest_single(api_port, args.single, 64, cpu)
        report["ingest_batch"] = await ingest_batch(
            api_port, args.batch_messages, 1000, args.batch_connections, cpu
        )
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
        procs.extend(workers)
        meter = {"api": api, "smsc": smsc, **{f"worker{i}": w for i, w in enumerate(workers)}}
        cpu = CpuMeter(meter)
        cpu.start()
        report["drain"] = await drain(store_url, args.batch_messages + args.single, cpu)
        report["end_to_end"] = await end_to_end(api_port, store_url, args.messages, cpu)
        report["paced"] = await paced(api_port, store_url, args.paced_rate, 10.0)
        report["rss_mib"] = {name: rss_mib(p.pid) for name, p in meter.items()}
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
    return report


def median_of(runs: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for run in runs:
        node: Any = run
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, (int, float)):
            values.append(float(node))
    return round(statistics.median(values), 1) if values else None


SUMMARY: tuple[tuple[str, ...], ...] = (
    ("ingest_single", "msg_per_s"),
    ("ingest_single", "p50_ms"),
    ("ingest_single", "p99_ms"),
    ("ingest_single", "cpu_ms_per_1k", "api"),
    ("ingest_batch", "msg_per_s"),
    ("ingest_batch", "cpu_ms_per_1k", "api"),
    ("drain", "msg_per_s"),
    ("drain", "cpu_ms_per_1k", "worker0"),
    ("drain", "cpu_ms_per_1k", "smsc"),
    ("drain", "cpu_ms_per_1k", "total"),
    ("end_to_end", "msg_per_s"),
    ("end_to_end", "latency_p50_ms"),
    ("end_to_end", "latency_p99_ms"),
    ("end_to_end", "cpu_ms_per_1k", "api"),
    ("end_to_end", "cpu_ms_per_1k", "worker0"),
    ("end_to_end", "cpu_ms_per_1k", "smsc"),
    ("end_to_end", "cpu_ms_per_1k", "total"),
    ("paced", "latency_p50_ms"),
    ("paced", "latency_p99_ms"),
    ("paced", "request_p99_ms"),
    ("rss_mib", "api"),
    ("rss_mib", "worker0"),
)


def check_destinations() -> None:
    for i in range(0, 40_000_000, 99_991):
        if slow_destination(destination(i)) is None:
            raise SystemExit(f"bench number generator made an invalid number: {destination(i)}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--store-url", help="an empty database; default: a fresh one per run")
    parser.add_argument("--messages", type=int, default=20000, help="end-to-end phase")
    parser.add_argument(
        "--batch-messages", type=int, default=100_000, help="batch ingest phase (long enough to time)"
    )
    parser.add_argument("--single", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-connections", type=int, default=8, help="clients posting batches at once")
    parser.add_argument(
        "--paced-rate", type=float, default=1000.0, help="messages/s of the latency-below-capacity phase"
    )
    parser.add_argument(
        "--api-processes", type=int, default=1, help="TIERGATE_API_PROCESSES of the ingest API"
    )
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--event-loop", choices=["auto", "uvloop", "asyncio"], default="auto", help="TIERGATE_EVENT_LOOP"
    )
    parser.add_argument("--out")
    args = parser.parse_args()
    check_destinations()
    server: Any = None
    admin_dsn = None
    if args.engine == "postgresql" and not args.store_url:
        admin_dsn = os.environ.get("TIERGATE_BENCH_POSTGRES_DSN")
        if not admin_dsn:
            from tiergate_kits.postgres import LocalPostgres, postgres_bindir

            bindir = postgres_bindir()
            if bindir is None:
                raise SystemExit("no PostgreSQL binaries and no TIERGATE_BENCH_POSTGRES_DSN")
            server = LocalPostgres(bindir)
            admin_dsn = server.start()
    runs: list[dict[str, Any]] = []
    try:
        for _ in range(args.runs):
            tmp = Path(tempfile.mkdtemp(prefix="tiergate-bench-"))
            store_url, cleanup = await fresh_store(args, admin_dsn, tmp)
            try:
                runs.append(await run_once(args, store_url, tmp))
            finally:
                await cleanup()
    finally:
        if server is not None:
            server.stop()
    report = {
        "engine": args.engine,
        "event_loop": args.event_loop,
        "durability": "SQLite WAL synchronous=FULL; PostgreSQL fsync=on synchronous_commit=on",
        "workers": args.workers,
        "api_processes": args.api_processes,
        "cpus": os.cpu_count(),
        "runs": len(runs),
        "median": {".".join(path): median_of(runs, *path) for path in SUMMARY},
        "each": runs,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")  # noqa: ASYNC240
    print(text)


async def fresh_store(
    args: argparse.Namespace, admin_dsn: str | None, tmp: Path
) -> tuple[str, Callable[[], Any]]:
    """A store URL for one run and a coroutine function that drops it."""

    async def nothing() -> None:
        return None

    if args.store_url:
        return args.store_url, nothing
    if args.engine == "sqlite":
        return f"sqlite://{tmp / 'bench.db'}", nothing
    import asyncpg

    assert admin_dsn is not None
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()

    async def drop() -> None:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    return f"{admin_dsn.rpartition('/')[0]}/{name}", drop


if __name__ == "__main__":
    asyncio.run(main())
