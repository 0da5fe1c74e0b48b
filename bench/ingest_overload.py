"""Overload of the ingest API at its default limits, as JSON: what a two-core install answers.

Starts ``tiergate sender api`` with no limit flags (so `DEFAULT_CUSTOMER_RATE` and
`DEFAULT_MAX_QUEUE_DEPTH` apply) over a fresh SQLite store on loopback, then lets
``--clients`` clients of one customer post single messages for ``--seconds``, and reports the
answers (202/429 counts, share of 429s carrying Retry-After) and request latency. Bounded:
a few seconds, one API process, no worker. Usage::

    python bench/ingest_overload.py [--clients 200] [--seconds 4] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

TIERGATE = str(Path(sys.executable).parent / "tiergate")


async def client(
    http: httpx.AsyncClient, until: float, n: int, codes: Counter[str], took: list[float]
) -> None:
    i = 0
    while time.monotonic() < until:
        body = {"destination": f"+49151{n:04d}{i % 10000:04d}", "sender_id": "Bench", "body": f"load {n} {i}"}
        started = time.perf_counter()
        response = await http.post("/v1/messages", json=body)
        took.append(time.perf_counter() - started)
        codes[str(response.status_code)] += 1
        if response.status_code == 429:
            codes["429_with_retry_after"] += "retry-after" in response.headers
        i += 1


def main(args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="tiergate-overload-"))
    port = 18600 + os.getpid() % 1000
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERGATE_")}
    env.update(
        TIERGATE_STORE_URL=f"sqlite://{tmp / 'tiergate.db'}",
        TIERGATE_HTTP_HOST="127.0.0.1",
        TIERGATE_HTTP_PORT=str(port),
        TIERGATE_API_TOKENS="tok=bench",
        TIERGATE_LOG_LEVEL="WARNING",
    )
    api = subprocess.Popen([TIERGATE, "sender", "api"], env=env, stdout=subprocess.DEVNULL)
    try:
        return asyncio.run(overload(args, port))
    finally:
        api.terminate()
        api.wait(30)


async def overload(args: argparse.Namespace, port: int) -> dict[str, object]:
    limits = httpx.Limits(max_connections=args.clients)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"authorization": "Bearer tok"},
        limits=limits,
        timeout=30,
    ) as http:
        for _ in range(300):
            try:
                await http.get("/healthz")
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        load = os.getloadavg()
        codes: Counter[str] = Counter()
        took: list[float] = []
        until = time.monotonic() + args.seconds
        await asyncio.gather(*[client(http, until, n, codes, took) for n in range(args.clients)])
    took.sort()
    return {
        "clients": args.clients,
        "seconds": args.seconds,
        "load_avg_at_start": [round(x, 2) for x in load],
        "answers": dict(codes),
        "accepted_per_s": round(codes["202"] / args.seconds, 1),
        "request_p50_ms": round(statistics.median(took) * 1000, 1),
        "request_p99_ms": round(took[int(len(took) * 0.99) - 1] * 1000, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out")
    parsed = parser.parse_args()
    report = json.dumps(main(parsed), indent=2)
    if parsed.out:
        Path(parsed.out).write_text(report + "\n")
    print(report)
