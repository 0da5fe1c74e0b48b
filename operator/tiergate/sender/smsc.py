"""A test SMSC for tests, demos and drills: a harness around smpp34's SMPP server.

The SMPP protocol side is the third-party `smpp34` server (Rust core), not ours; this module
only decides each submit's answer (accept, throttle, reject by destination prefix), counts
what arrived per message key to expose duplicates, sends delivery receipts on request, and
serves the counts on a small HTTP endpoint. ``POST /down`` and ``POST /up`` stop and restart
the SMPP listener, to play an upstream outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import smpp34
from smpp34._smpp34 import ESME_RINVDSTADR, ESME_RTHROTTLED
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tiergate.httpserver import HttpServer, install_stop_signals
from tiergate.sender.ratelimit import TokenBucket

log = logging.getLogger(__name__)


def message_key(destination: str, data_coding: int, short_message: bytes) -> str:
    """The key duplicates are counted by: destination and decoded body."""
    if data_coding == 8:
        text = short_message.decode("utf-16-be", errors="replace")
    else:
        text = short_message.decode("latin-1")
    return f"{destination}|{text}"


@dataclass
class SmscStats:
    """What the SMSC saw."""

    submits: int = 0
    accepted: int = 0
    throttled: int = 0
    rejected: int = 0
    receipts_sent: int = 0
    receipts_failed: int = 0
    binds: int = 0
    per_key: Counter[str] = field(default_factory=Counter)

    def snapshot(self, *, keys: bool = False) -> dict[str, object]:
        """A JSON-able view; with `keys`, the accepted count per message key."""
        duplicates = sum(n - 1 for n in self.per_key.values() if n > 1)
        data: dict[str, object] = {
            "submits": self.submits,
            "accepted": self.accepted,
            "throttled": self.throttled,
            "rejected": self.rejected,
            "unique": len(self.per_key),
            "duplicates": duplicates,
            "receipts_sent": self.receipts_sent,
            "receipts_failed": self.receipts_failed,
            "binds": self.binds,
        }
        if keys:
            data["keys"] = dict(self.per_key)
        return data


class TestSmsc:
    """An SMSC on `host:port` with its stats on `stats_port` (if given)."""

    __test__ = False

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 2775,
        *,
        stats_port: int | None = None,
        throttle_rate: float | None = None,
        reject_prefixes: tuple[str, ...] = (),
        receipts: bool = False,
        receipt_delay: float = 0.0,
        system_id: str = "tiergate-smsc",
        inbound_capacity: int = 4096,
    ) -> None:
        self.host = host
        self.port = port
        self.stats_port = stats_port
        self.reject_prefixes = tuple(p.removeprefix("+") for p in reject_prefixes)
        self.receipts = receipts
        self.receipt_delay = receipt_delay
        self.system_id = system_id
        self.inbound_capacity = inbound_capacity
        self.stats = SmscStats()
        self._bucket = (
            TokenBucket(throttle_rate, burst=max(1.0, throttle_rate / 20)) if throttle_rate else None
        )
        self._server: smpp34.Server | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._sessions: dict[str, smpp34.Esme] = {}
        self._ids = itertools.count(1)
        self._receipt_tasks: set[asyncio.Task[None]] = set()
        self._http: HttpServer | None = None
        self.up = False

    async def start(self) -> None:
        """Start the SMPP listener and the stats endpoint."""
        await self.bring_up()
        if self.stats_port is not None:
            self._http = HttpServer(self.app(), self.host, self.stats_port)
            await self._http.start()

    async def bring_up(self) -> None:
        """Start listening for binds."""
        if self.up:
            return
        server = smpp34.Server(
            self.host, self.port, system_id=self.system_id, inbound_capacity=self.inbound_capacity
        )
        await server.start()
        self._server = server
        self._loop_task = asyncio.create_task(self._serve(server), name="smsc")
        self.up = True
        log.info("SMSC listening host=%s port=%d", self.host, self.port)

    async def bring_down(self) -> None:
        """Stop listening and drop every session (an upstream outage)."""
        if not self.up:
            return
        self.up = False
        server, self._server = self._server, None
        for esme in list(self._sessions.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(esme.unbind(), 1.0)
        self._sessions.clear()
        if server is not None:
            await server.stop()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
        log.info("SMSC down host=%s port=%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop everything."""
        await self.bring_down()
        for task in list(self._receipt_tasks):
            task.cancel()
        if self._http is not None:
            await self._http.stop()

    async def _serve(self, server: smpp34.Server) -> None:
        while True:
            event = await server.next()
            if isinstance(event, smpp34.SubmitSmEvent):
                self._on_submit(event)
            elif isinstance(event, smpp34.Esme):
                self._sessions[event.session_id] = event
                self.stats.binds += 1
            elif isinstance(event, smpp34.Unbound):
                self._sessions.pop(event.session_id, None)

    def _on_submit(self, event: smpp34.SubmitSmEvent) -> None:
        self.stats.submits += 1
        destination = event.destination_addr
        if any(destination.startswith(p) for p in self.reject_prefixes):
            self.stats.rejected += 1
            event.reject(ESME_RINVDSTADR)
            return
        if self._bucket is not None and not self._bucket.try_acquire():
            self.stats.throttled += 1
            event.reject(ESME_RTHROTTLED)
            return
        message_id = f"S{next(self._ids):010d}"
        event.accept(message_id)
        self.stats.accepted += 1
        self.stats.per_key[message_key(destination, event.data_coding, event.short_message)] += 1
        if self.receipts and event.registered_delivery & 0x01:
            esme = self._sessions.get(event.session_id)
            if esme is not None:
                task = asyncio.create_task(self._receipt(esme, message_id, event.source_addr, destination))
                self._receipt_tasks.add(task)
                task.add_done_callback(self._receipt_tasks.discard)

    async def _receipt(self, esme: smpp34.Esme, message_id: str, source: str, destination: str) -> None:
        if self.receipt_delay:
            await asyncio.sleep(self.receipt_delay)
        stamp = time.strftime("%y%m%d%H%M", time.gmtime())
        text = (
            f"id:{message_id} sub:001 dlvrd:001 submit date:{stamp} done date:{stamp} "
            f"stat:DELIVRD err:000 text:"
        )
        try:
            resp = await esme.deliver_sm(
                source, text.encode("ascii"), source_addr=destination, esm_class=0x04
            )
        except Exception:
            self.stats.receipts_failed += 1
            return
        if resp.is_success:
            self.stats.receipts_sent += 1
        else:
            self.stats.receipts_failed += 1

    def app(self) -> Starlette:
        """The stats and control endpoint."""

        async def stats(request: Request) -> Response:
            keys = request.query_params.get("keys") in {"1", "true"}
            body = self.stats.snapshot(keys=keys)
            body["up"] = self.up
            return JSONResponse(body)

        async def metrics(request: Request) -> Response:
            snap = self.stats.snapshot()
            lines = [f"tiergate_smsc_{name} {value}" for name, value in snap.items()]
            return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

        async def down(request: Request) -> Response:
            await self.bring_down()
            return JSONResponse({"up": self.up})

        async def up(request: Request) -> Response:
            await self.bring_up()
            return JSONResponse({"up": self.up})

        async def reset(request: Request) -> Response:
            self.stats = SmscStats()
            return JSONResponse({"reset": True})

        async def healthz(request: Request) -> Response:
            return JSONResponse({"up": self.up})

        return Starlette(
            routes=[
                Route("/stats", stats),
                Route("/metrics", metrics),
                Route("/healthz", healthz),
                Route("/down", down, methods=["POST"]),
                Route("/up", up, methods=["POST"]),
                Route("/reset", reset, methods=["POST"]),
            ]
        )


async def run_smsc(smsc: TestSmsc) -> None:
    """Run a test SMSC until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    install_stop_signals(stop.set)
    await smsc.start()
    try:
        await stop.wait()
    finally:
        await smsc.stop()
