"""Steady, mixed SMS traffic for demos and drills, posted to the sender's ingest API.

Batches go out every quarter second so the rate holds without one request per message; every
message carries its own idempotency key, so a retried batch never doubles anything.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from dataclasses import dataclass, field

import httpx

log = logging.getLogger("tiergate.load")

TICK = 0.25


@dataclass
class LoadStats:
    """What a load run sent and what the API said."""

    accepted: int = 0
    refused: int = 0
    errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


def batch(classes: list[str], count: int, seq: itertools.count[int]) -> list[dict[str, str]]:
    """``count`` messages spread over the traffic classes, each with its own idempotency key."""
    out = []
    for _ in range(count):
        n = next(seq)
        out.append(
            {
                "destination": f"+49151{n % 100000000:08d}",
                "sender_id": "TIERGATE",
                "body": f"Your code is {n % 1000000:06d}",
                "traffic_class": classes[n % len(classes)],
                "client_ref": f"load-{n}",
                "idempotency_key": uuid.uuid4().hex,
            }
        )
    return out


async def run(url: str, token: str, rate: float, classes: list[str], duration: float | None) -> LoadStats:
    """Post ``rate`` messages per second until ``duration`` elapses (or forever)."""
    stats = LoadStats()
    seq = itertools.count()
    owed = 0.0
    started = time.monotonic()
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as http:
        while duration is None or time.monotonic() - started < duration:
            tick_start = time.monotonic()
            owed += rate * TICK
            count, owed = int(owed), owed - int(owed)
            if count:
                try:
                    response = await http.post(
                        "/v1/messages:batch", json={"messages": batch(classes, count, seq)}
                    )
                    stats.by_status[response.status_code] = stats.by_status.get(response.status_code, 0) + 1
                    if response.status_code == 202:
                        stats.accepted += count
                    else:
                        stats.refused += count
                except httpx.HTTPError as exc:
                    stats.errors += 1
                    log.warning("Load batch failed url=%s error=%r", url, exc)
            await asyncio.sleep(max(TICK - (time.monotonic() - tick_start), 0))
    return stats
