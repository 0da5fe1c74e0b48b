"""Replay benchmark: the incident's 147,000 discards across 5,000 customers, replayed to an SMPP
peer unthrottled and at a set rate; prints one JSON document.

Real processes on loopback: the smpp34 test SMSC (``tiergate smsc``), the sender's tier
workers (``tiergate sender worker``) and the replay service (``python -m tiergate.replay replay
serve``), over one store. Discards are seeded through the store API (enqueue, lease, discard in
bulk). Each phase starts a replay job over its own tier's discards and ends when the SMSC has
accepted every one of them; duplicates are the SMSC's own count of message keys seen twice.

    .venv/bin/python bench/replay_bench.py [--messages 147000] [--customers 5000]
        [--rate 2000] [--rated-messages 147000] [--workers 2] [--store-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tiergate.store import Discard, Encoding, NewMessage, Store, WorkerIdentity, open_store
from tiergate_kits.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]

TIERGATE = str(Path(sys.executable).parent / "tiergate")
TOKEN = "bench-oncall"
CLASS = "bulk"


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


class Procs:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("TIERGATE_")}
        full["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), str(ROOT)])
        full["TIERGATE_LOG_LEVEL"] = "WARNING"
        full.update(env)
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(argv, env=full, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def wait_up(url: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} not up in {within}s")


async def seed(store: Store, n: int, customers: int, tier: str, start: int) -> float:
    """Enqueue, lease and discard `n` messages of `tier`; returns seconds taken."""
    began = time.perf_counter()
    identity = WorkerIdentity(f"seed-{tier}", tier, "bad-rev")
    chunk = 5000
    for offset in range(0, n, chunk):
        size = min(chunk, n - offset)
        await store.enqueue(
            [
                NewMessage(
                    customer_id=f"c{(start + offset + i) % customers:05d}",
                    traffic_class=CLASS,
                    destination=f"+4477009{(start + offset + i) % 100000:05d}",
                    sender_id="ACME",
                    body=f"replay bench {start + offset + i}",
                    encoding=Encoding.GSM7,
                    segments=1,
                    idempotency_key=f"b{start + offset + i}",
                )
                for i in range(size)
            ]
        )
        leased = await store.lease(CLASS, identity, size, 3600.0)
        await store.complete([Discard(m.id, identity.owner, "max-attempts", "bench") for m in leased])
    return time.perf_counter() - began


async def phase(
    http: httpx.AsyncClient, smsc_stats: str, tier: str, n: int, rate: float | None, pids: dict[str, int]
) -> dict[str, Any]:
    before = (await http.get(smsc_stats)).json()["accepted"]
    body: dict[str, Any] = {"filter": {"tier": [tier]}, "source": "bench"}
    if rate is not None:
        body["rate"] = rate
    started = time.perf_counter()
    response = await http.post("/v1/replays", json=body)
    response.raise_for_status()
    job_id = response.json()["id"]
    claimed_at: float | None = None
    samples: list[tuple[float, int]] = []
    while True:
        accepted = (await http.get(smsc_stats)).json()["accepted"] - before
        now = time.perf_counter()
        samples.append((now, accepted))
        if claimed_at is None:
            job = (await http.get(f"/v1/replays/{job_id}")).json()
            if job["state"] in ("done", "failed", "cancelled"):
                claimed_at = now
        if accepted >= n and claimed_at is not None:
            break
        if now - started > 1800:
            raise TimeoutError(f"phase {tier} did not finish: accepted {accepted} of {n}")
        await asyncio.sleep(0.05)
    wall = samples[-1][0] - started
    low, high = int(n * 0.1), int(n * 0.9)
    t_low = next(t for t, a in samples if a >= low)
    t_high = next(t for t, a in samples if a >= high)
    job = (await http.get(f"/v1/replays/{job_id}")).json()
    return {
        "messages": n,
        "set_rate_per_s": rate,
        "wall_seconds": round(wall, 2),
        "claims_done_seconds": round(claimed_at - started, 2) if claimed_at else None,
        "achieved_rate_per_s": round(n / wall, 1),
        "steady_rate_per_s_10_to_90_pct": round((high - low) / (t_high - t_low), 1),
        "job": {k: job[k] for k in ("state", "matched", "replayed", "skipped", "failed")},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=147_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="set rate of the throttled phase")
    parser.add_argument(
        "--rated-messages",
        type=int,
        default=None,
        help="discards in the throttled phase (default: --messages)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--max-batch", type=int, default=None, help="replay serve --max-batch")
    parser.add_argument("--store-url", default=None)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="start a throwaway local PostgreSQL (Debian's binaries) and use it",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rated_n = args.rated_messages if args.rated_messages is not None else args.messages

    workdir = Path(tempfile.mkdtemp(prefix="tiergate-replay-bench-"))
    server = None
    if args.postgres:
        from tiergate_kits.postgres import LocalPostgres, postgres_bindir

        bindir = postgres_bindir()
        if bindir is None:
            raise SystemExit("no PostgreSQL binaries (apt-get install postgresql)")
        server = LocalPostgres(bindir)
        args.store_url = server.start()
    store_url = args.store_url or f"sqlite://{workdir / 'tiergate.db'}"
    store = await open_store(store_url)
    seed_fast = await seed(store, args.messages, args.customers, "unthrottled", 0)
    seed_rated = await seed(store, rated_n, args.customers, "rated", args.messages)
    await store.close()

    procs = Procs(workdir)
    smpp, stats, replay_port = free_port(), free_port(), free_port()
    smsc = procs.start("smsc", [TIERGATE, "smsc", "--port", str(smpp), "--stats-port", str(stats)], {})
    await wait_up(f"http://127.0.0.1:{stats}/healthz")
    workers = []
    for i in range(args.workers):
        port = free_port()
        workers.append(
            procs.start(
                f"worker-{i}",
                [
                    TIERGATE,
                    "sender",
                    "worker",
                    "--tier",
                    "bench",
                    "--traffic-class",
                    CLASS,
                    "--revision",
                    "good",
                    "--store",
                    store_url,
                    "--upstream",
                    f"smpp://127.0.0.1:{smpp}",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--window",
                    str(args.window),
                ],
                {},
            )
        )
        await wait_up(f"http://127.0.0.1:{port}/readyz")
    replay = procs.start(
        "replay",
        [
            sys.executable,
            "-m",
            "tiergate.replay",
            "replay",
            "serve",
            "--store",
            store_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(replay_port),
            "--metrics-interval",
            "5",
            *(["--max-batch", str(args.max_batch)] if args.max_batch else []),
        ],
        {"TIERGATE_REPLAY_TOKENS": f"{TOKEN}=bench"},
    )
    await wait_up(f"http://127.0.0.1:{replay_port}/readyz")
    result: dict[str, Any] = {
        "benchmark": "replay",
        "engine": store_url.split(":", 1)[0],
        "workers": args.workers,
        "worker_window": args.window,
        "max_batch": args.max_batch or 500,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "customers": args.customers,
        "seed_seconds": {"unthrottled": round(seed_fast, 2), "rated": round(seed_rated, 2)},
        "cpu_count": os.cpu_count(),
    }
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{replay_port}",
            timeout=30,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as http:
            pids = {"replay": replay.pid, "smsc": smsc.pid}
            smsc_stats = f"http://127.0.0.1:{stats}/stats"
            result["unthrottled"] = await phase(http, smsc_stats, "unthrottled", args.messages, None, pids)
            result["rated"] = await phase(http, smsc_stats, "rated", rated_n, args.rate, pids)
            final = (await http.get(smsc_stats)).json()
        result["smsc"] = {k: final[k] for k in ("accepted", "unique", "duplicates", "throttled", "rejected")}
        result["duplicates"] = final["duplicates"]
        result["peak_rss_mib"] = {
            "replay_service": rss_mib(replay.pid),
            "workers": [rss_mib(w.pid) for w in workers],
            "smsc": rss_mib(smsc.pid),
        }
        result["target_unthrottled_under_60s"] = result["unthrottled"]["wall_seconds"] < 60
    finally:
        procs.stop()
        if server is not None:
            server.stop()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")  # noqa: ASYNC240


if __name__ == "__main__":
    asyncio.run(main())
