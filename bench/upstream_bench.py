"""Upstream benchmark: TPS fidelity, throttle recovery and failover time of the connectors, as JSON.

Real processes on loopback: test SMSCs (``tiergate smsc``, smpp34's server) driven over
their HTTP switches, one ``tiergate sender worker`` on a connectors file, a fresh SQLite store
per scenario. Usage::

    python bench/upstream_bench.py [--seconds 10] [--out FILE]

Scenarios, each measured from the SMSCs' own 100 ms timelines:

- ``fidelity_one``: one connector (tps 500, 2 binds) against an SMSC capped at 500/s, on a
  backlog; accepted rate and throttled share over ``--seconds`` after a 2 s ramp;
- ``fidelity_two``: connectors of 300 and 200 tps against SMSCs capped at the same;
- ``throttle_recovery``: at 500/s, the SMSC throttles everything for 1 s; how long after it
  recovers until a 500 ms window runs at 90 % of the cap, and how many submits the burst cost;
- ``failover``: 300 msg/s offered to two connectors of 400 tps; one SMSC is killed (SIGKILL):
  how long until the survivor carries 85 % of the offered load over a 500 ms window; then it
  is restarted: how long until it takes traffic again; messages lost (not submitted) at the end.

The load average is recorded before each scenario: rates on a shared machine depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]

from tests.plugins.smsc import Proc, SmscProc, Spawner, binned_rate  # noqa: E402
from tests.plugins.upstream import (  # noqa: E402
    Feeder,
    connectors_file,
    enqueue,
    first_accept,
    message,
    start_worker,
    until_drained,
)

WINDOW = 0.5


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def first_window_at(bins: dict[str, int], start: float, end: float, rate: float) -> float | None:
    """Seconds after `start` until a WINDOW-long window from then runs at `rate` or more."""
    t = start
    while t + WINDOW <= end:
        if binned_rate(bins, t, t + WINDOW) >= rate:
            return round(t - start, 2)
        t += 0.1
    return None


async def fidelity(spawn: Callable[..., Proc], tmp: Path, caps: list[int], seconds: float) -> dict[str, Any]:
    store_url = f"sqlite://{tmp / 'q.db'}"
    smscs = [SmscProc(spawn, f"smsc{i}", ["--throttle-rate", str(cap)]) for i, cap in enumerate(caps)]
    await enqueue(store_url, [message(i) for i in range(int(sum(caps) * (seconds + 8)))])
    config = connectors_file(
        tmp,
        *(
            {"name": f"c{i}", "url": s.url, "tps": cap, "binds": 2}
            for i, (s, cap) in enumerate(zip(smscs, caps, strict=True))
        ),
    )
    start_worker(spawn, tmp, store_url, config)
    begin = max([await first_accept(s) for s in smscs]) + 2.0
    await asyncio.sleep(begin + seconds - time.time() + 0.2)
    out: dict[str, Any] = {"seconds": seconds}
    for i, (smsc, cap) in enumerate(zip(smscs, caps, strict=True)):
        rate = smsc.accepted_rate(begin, begin + seconds)
        throttled = smsc.throttled_between(begin, begin + seconds)
        out[f"c{i}"] = {
            "cap": cap,
            "msg_per_s": round(rate, 1),
            "fidelity": round(rate / cap, 3),
            "throttled_share": round(throttled / max(1.0, rate * seconds + throttled), 4),
        }
    return out


async def throttle_recovery(spawn: Callable[..., Proc], tmp: Path) -> dict[str, Any]:
    cap = 500
    store_url = f"sqlite://{tmp / 'q.db'}"
    smsc = SmscProc(spawn, "smsc", ["--throttle-rate", str(cap)])
    await enqueue(store_url, [message(i) for i in range(cap * 14)])
    config = connectors_file(tmp, {"name": "c", "url": smsc.url, "tps": cap, "binds": 2})
    start_worker(spawn, tmp, store_url, config)
    await asyncio.sleep(await first_accept(smsc) + 3.0 - time.time())
    burst = time.time()
    smsc.switch(throttle=True)
    await asyncio.sleep(1.0)
    smsc.switch(throttle=False)
    recovered = time.time()
    await asyncio.sleep(5.0)
    bins = smsc.accepted_bins(burst - 2.0)
    before = binned_rate(bins, burst - 2.0, burst)
    return {
        "cap": cap,
        "msg_per_s_before": round(before, 1),
        "seconds_to_90pct_after_recovery": first_window_at(bins, recovered, recovered + 5.0, 0.9 * cap),
        "msg_per_s_1_to_3s_after": round(binned_rate(bins, recovered + 1.0, recovered + 3.0), 1),
        "submits_lost_to_the_burst": round(before * 3.0 - binned_rate(bins, burst, burst + 3.0) * 3.0),
    }


async def failover(spawn: Callable[..., Proc], tmp: Path) -> dict[str, Any]:
    offered = 300.0
    store_url = f"sqlite://{tmp / 'q.db'}"
    a, b = SmscProc(spawn, "a", []), SmscProc(spawn, "b", [])
    config = connectors_file(
        tmp,
        {"name": "a", "url": a.url, "tps": 400, "binds": 2},
        {"name": "b", "url": b.url, "tps": 400, "binds": 2},
    )
    start_worker(spawn, tmp, store_url, config)
    with Feeder(store_url, offered) as feeder:
        await first_accept(a)
        await asyncio.sleep(await first_accept(b) + 3.0 - time.time())
        killed = time.time()
        a.kill()
        await asyncio.sleep(5.0)
        bins = b.accepted_bins(killed - 3.0)
        a.restart()
        restarted = time.time()
        back = await first_accept(a, within=30.0)
        await asyncio.sleep(back + 3.0 - time.time())
        both = a.accepted_rate(back + 1.0, back + 3.0), b.accepted_rate(back + 1.0, back + 3.0)
        ids = await feeder.stopped()
    counts = await until_drained(store_url, ids)
    return {
        "offered_msg_per_s": offered,
        "survivor_msg_per_s_before": round(binned_rate(bins, killed - 2.0, killed), 1),
        "seconds_to_survivor_85pct": first_window_at(bins, killed, killed + 5.0, 0.85 * offered),
        "seconds_to_traffic_after_restart": round(back - restarted, 2),
        "msg_per_s_each_after_restart": [round(x, 1) for x in both],
        "messages": len(ids),
        "lost": len(ids) - counts.get("submitted", 0),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"cpus": os.cpu_count()}
    scenarios: list[tuple[str, Callable[[Spawner, Path], Any]]] = [
        ("fidelity_one", lambda s, t: fidelity(s, t, [500], args.seconds)),
        ("fidelity_two", lambda s, t: fidelity(s, t, [300, 200], args.seconds)),
        ("throttle_recovery", throttle_recovery),
        ("failover", failover),
    ]
    for name, scenario in scenarios:
        tmp = Path(tempfile.mkdtemp(prefix=f"tiergate-upstream-{name}-"))
        spawner = Spawner(tmp)
        started = load()
        try:
            report[name] = {"load_avg_at_start": started, **await scenario(spawner, tmp)}
        finally:
            spawner.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window of the fidelity runs")
    parser.add_argument("--out")
    args = parser.parse_args()
    text = json.dumps(asyncio.run(run(args)), indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
