"""Steady mixed traffic through the sender's ingest API, recording every message's outcome.

Unlike ``tiergate dev load`` (which only counts), the drill must know each message: the time
the API answered, what it answered and the id it gave, so the end of the run can look every
accepted message up in the store. Batches go out every quarter second, each from one of many
customers (one API token each), spread over the traffic classes by their shares.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import threading
import time
import uuid
from collections.abc import Mapping

import httpx

from tiergate_kits.drill.analysis import (
    ACCEPTED,
    CLIENT_ERROR,
    CONNECTION_ERROR,
    RATE_LIMITED,
    SERVER_ERROR,
    Sent,
)

log = logging.getLogger("tiergate_kits.drill.traffic")

TICK = 0.25
BATCH = 25
MAX_IN_FLIGHT = 32


def customer_tokens(count: int) -> dict[str, str]:
    """``count`` API tokens, one per customer: token -> customer id."""
    return {f"drill-token-{i:03d}": f"cust-{i:03d}" for i in range(count)}


def outcome_of(status: int) -> str:
    """The recorded outcome of an HTTP status."""
    if status == 202:
        return ACCEPTED
    if status == 429:
        return RATE_LIMITED
    if status >= 500:
        return SERVER_ERROR
    return CLIENT_ERROR


class Traffic:
    """Posts ``rate`` messages/s split by ``shares`` from a background thread; records each one."""

    def __init__(
        self,
        url: str,
        tokens: Mapping[str, str],
        rate: float,
        shares: Mapping[str, float],
        prefix: int,
        seed: int = 1,
    ) -> None:
        self.url = url
        self.tokens = list(tokens.items())
        self.rate = rate
        self.shares = dict(shares)
        self.prefix = prefix
        self.sent: list[Sent] = []
        self._rng = random.Random(seed)
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._loop()), name="drill-traffic", daemon=True
        )

    def start(self) -> Traffic:
        """Start sending."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending and wait for requests in flight."""
        self._stop.set()
        self._thread.join(60)

    def _messages(self, cls: str, count: int) -> list[dict[str, str]]:
        out = []
        for _ in range(count):
            n = next(self._seq)
            out.append(
                {
                    "destination": f"+49151{n % 100000000:08d}",
                    "sender_id": "TIERGATE",
                    "body": f"Drill run {self.prefix} message {n}",
                    "traffic_class": cls,
                    "client_ref": f"drill-{self.prefix}-{n}",
                    "idempotency_key": uuid.uuid4().hex,
                }
            )
        return out

    async def _post(self, http: httpx.AsyncClient, sem: asyncio.Semaphore, cls: str, count: int) -> None:
        token, customer = self._rng.choice(self.tokens)
        body = {"messages": self._messages(cls, count)}
        async with sem:
            try:
                response = await http.post(
                    "/v1/messages:batch", json=body, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError as exc:
                log.warning("Drill batch failed url=%s error=%s", self.url, type(exc).__name__)
                now = time.time()
                self.sent.extend(Sent(cls, customer, now, CONNECTION_ERROR) for _ in range(count))
                return
        now = time.time()
        outcome = outcome_of(response.status_code)
        if outcome == ACCEPTED:
            items = response.json()["messages"]
            self.sent.extend(Sent(cls, customer, now, ACCEPTED, item["id"]) for item in items)
        else:
            self.sent.extend(Sent(cls, customer, now, outcome) for _ in range(count))

    async def _loop(self) -> None:
        owed = dict.fromkeys(self.shares, 0.0)
        sem = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as http:
            while not self._stop.is_set():
                tick_start = time.monotonic()
                for cls, share in self.shares.items():
                    owed[cls] += self.rate * share * TICK
                    count = int(owed[cls])
                    owed[cls] -= count
                    while count > 0:
                        part = min(count, BATCH)
                        count -= part
                        task = asyncio.create_task(self._post(http, sem, cls, part))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                await asyncio.sleep(max(TICK - (time.monotonic() - tick_start), 0))
            if tasks:
                await asyncio.wait(set(tasks), timeout=30)
