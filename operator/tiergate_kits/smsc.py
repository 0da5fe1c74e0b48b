"""A test SMSC for tests, demos and drills: a harness around smpp34's SMPP server.

The SMPP protocol side is the third-party `smpp34` server (Rust core), not ours; this module
only decides each submit's answer (accept, throttle, reject by destination prefix), counts
what arrived per message key to expose duplicates, sends delivery receipts on request, and
serves the counts on a small HTTP endpoint. A receipt goes to the bind that submitted the
message; when that bind is gone (a worker restarted), it is held and sent on another bind of
the same system id, as carriers' SMSCs store receipts for the account (for `RECEIPT_HOLD`).
``POST /down`` and ``POST /up`` stop and restart the SMPP listener, to play an upstream outage.

Runtime switches, so that a test plays a carrier misbehaving (``GET /switches`` shows them,
``POST /switches`` with a JSON object changes the fields given):

- ``throttle`` (bool): answer every submit ``ESME_RTHROTTLED``;
- ``tps`` (number or null): accept at most this many submits/s (a token bucket holding half a
  second, as SMSCs count over a short window), throttle the rest;
- ``reject_all`` (bool): answer every submit ``reject_status`` (default ``ESME_RSYSERR``);
- ``reject_prefixes`` (list): answer destinations with these prefixes ``ESME_RINVDSTADR``;
- ``silent`` (bool): answer no submit at all (the ESME's submits time out).

``POST /drop`` unbinds every session but keeps listening (the ESMEs rebind). ``GET /timeline``
gives accepted and throttled submits per 100 ms (wall clock) for rate measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections import Counter
from collections.abc import Mapping
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
    receipts_rerouted: int = 0
    binds: int = 0
    unanswered: int = 0
    per_key: Counter[str] = field(default_factory=Counter)
    accepted_bins: Counter[int] = field(default_factory=Counter)
    throttled_bins: Counter[int] = field(default_factory=Counter)

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
            "receipts_rerouted": self.receipts_rerouted,
            "binds": self.binds,
            "unanswered": self.unanswered,
        }
        if keys:
            data["keys"] = dict(self.per_key)
        return data

    def timeline(self, since: float = 0.0) -> dict[str, object]:
        """Accepted and throttled submits per `BIN` seconds from `since` (wall clock)."""
        first = int(since / BIN)
        return {
            "bin": BIN,
            "accepted": {str(k): v for k, v in sorted(self.accepted_bins.items()) if k >= first},
            "throttled": {str(k): v for k, v in sorted(self.throttled_bins.items()) if k >= first},
        }


BIN = 0.1
RECEIPT_HOLD = 60.0  # how long a receipt waits for a bind of its account
RECEIPT_RETRY = 0.5
REJECT_STATUSES = frozenset(name for name in dir(smpp34) if name.startswith("ESME_R") and name != "ESME_ROK")


@dataclass
class Switches:
    """How the SMSC answers submits right now; see the module docstring."""

    throttle: bool = False
    tps: float | None = None
    reject_all: bool = False
    reject_status: str = "ESME_RSYSERR"
    reject_prefixes: tuple[str, ...] = ()
    silent: bool = False

    def view(self) -> dict[str, object]:
        """The switches as JSON."""
        return {
            "throttle": self.throttle,
            "tps": self.tps,
            "reject_all": self.reject_all,
            "reject_status": self.reject_status,
            "reject_prefixes": list(self.reject_prefixes),
            "silent": self.silent,
        }

    def changed(self, body: Mapping[str, object]) -> Switches:
        """A copy with the fields of a JSON body changed; ValueError names a bad field."""
        unknown = set(body) - set(self.view())
        if unknown:
            raise ValueError(f"unknown switches: {', '.join(sorted(unknown))}")
        out = dataclasses.replace(self)
        for name in ("throttle", "reject_all", "silent"):
            if name in body:
                if not isinstance(body[name], bool):
                    raise ValueError(f"{name} must be true or false")
                setattr(out, name, body[name])
        if "tps" in body:
            tps = body["tps"]
            if tps is not None and (isinstance(tps, bool) or not isinstance(tps, int | float) or tps <= 0):
                raise ValueError("tps must be a positive number or null")
            out.tps = None if tps is None else float(tps)
        if "reject_status" in body:
            if body["reject_status"] not in REJECT_STATUSES:
                raise ValueError(f"reject_status must be one of {', '.join(sorted(REJECT_STATUSES))}")
            out.reject_status = str(body["reject_status"])
        if "reject_prefixes" in body:
            prefixes = body["reject_prefixes"]
            if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
                raise ValueError("reject_prefixes must be a list of strings")
            out.reject_prefixes = tuple(p.removeprefix("+") for p in prefixes)
        return out


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
        self.receipts = receipts
        self.receipt_delay = receipt_delay
        self.system_id = system_id
        self.inbound_capacity = inbound_capacity
        self.stats = SmscStats()
        self.switches = Switches()
        self._bucket: TokenBucket | None = None
        self._held: list[smpp34.SubmitSmEvent] = []
        self.switch(tps=throttle_rate, reject_prefixes=list(reject_prefixes))
        self._server: smpp34.Server | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._sessions: dict[str, smpp34.Esme] = {}
        self._ids = itertools.count(1)
        self._receipt_tasks: set[asyncio.Task[None]] = set()
        self._http: HttpServer | None = None
        self.up = False

    def switch(self, **changes: object) -> Switches:
        """Change switches by name (as ``POST /switches`` does); the new switches."""
        new = self.switches.changed(changes)
        if new.tps != self.switches.tps or (self._bucket is None and new.tps):
            self._bucket = TokenBucket(new.tps, burst=max(1.0, new.tps / 2)) if new.tps else None
        if not new.silent:
            self._held.clear()
        self.switches = new
        log.info("SMSC switches port=%d switches=%s", self.port, new.view())
        return new

    async def drop(self) -> int:
        """Unbind every session (the listener stays up); how many were dropped."""
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(
            *(asyncio.wait_for(esme.unbind(), 1.0) for esme in sessions), return_exceptions=True
        )
        return len(sessions)

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
        if server is not None:
            await server.stop()
        await self.drop()
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
        switches = self.switches
        destination = event.destination_addr
        if switches.silent:
            self.stats.unanswered += 1
            self._held.append(event)
            return
        if switches.reject_all:
            self.stats.rejected += 1
            event.reject(getattr(smpp34, switches.reject_status))
            return
        if destination.startswith(switches.reject_prefixes):
            self.stats.rejected += 1
            event.reject(ESME_RINVDSTADR)
            return
        if switches.throttle or (self._bucket is not None and not self._bucket.try_acquire()):
            self.stats.throttled += 1
            self.stats.throttled_bins[int(time.time() / BIN)] += 1
            event.reject(ESME_RTHROTTLED)
            return
        message_id = f"S{next(self._ids):010d}"
        event.accept(message_id)
        self.stats.accepted += 1
        self.stats.accepted_bins[int(time.time() / BIN)] += 1
        self.stats.per_key[message_key(destination, event.data_coding, event.short_message)] += 1
        if self.receipts and event.registered_delivery & 0x01:
            esme = self._sessions.get(event.session_id)
            if esme is not None:
                task = asyncio.create_task(self._receipt(esme, message_id, event.source_addr, destination))
                self._receipt_tasks.add(task)
                task.add_done_callback(self._receipt_tasks.discard)

    async def _receipt(self, submitter: smpp34.Esme, message_id: str, source: str, destination: str) -> None:
        if self.receipt_delay:
            await asyncio.sleep(self.receipt_delay)
        stamp = time.strftime("%y%m%d%H%M", time.gmtime())
        text = (
            f"id:{message_id} sub:001 dlvrd:001 submit date:{stamp} done date:{stamp} "
            f"stat:DELIVRD err:000 text:"
        ).encode("ascii")
        deadline = time.monotonic() + RECEIPT_HOLD
        while True:
            esme = self._receiver_for(submitter)
            if esme is not None:
                try:
                    resp = await esme.deliver_sm(source, text, source_addr=destination, esm_class=0x04)
                except Exception:
                    resp = None
                if resp is not None and resp.is_success:
                    self.stats.receipts_sent += 1
                    if esme is not submitter:
                        self.stats.receipts_rerouted += 1
                    return
                if resp is not None and esme is submitter and submitter.session_id in self._sessions:
                    break  # the bind is up and refused it: the ESME's answer stands
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(RECEIPT_RETRY)
        self.stats.receipts_failed += 1

    def _receiver_for(self, submitter: smpp34.Esme) -> smpp34.Esme | None:
        """The bind a receipt goes to: the submitter while it is bound, else another of its account."""
        if submitter.session_id in self._sessions:
            return submitter
        return next(
            (e for e in self._sessions.values() if e.system_id == submitter.system_id and e.can_receive),
            None,
        )

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

        async def switches(request: Request) -> Response:
            if request.method == "POST":
                body = await request.json()
                if not isinstance(body, dict):
                    return JSONResponse({"error": "a JSON object of switches"}, status_code=400)
                try:
                    self.switch(**body)
                except ValueError as exc:
                    return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(self.switches.view())

        async def drop(request: Request) -> Response:
            return JSONResponse({"dropped": await self.drop()})

        async def timeline(request: Request) -> Response:
            since = float(request.query_params.get("since") or 0)
            return JSONResponse(self.stats.timeline(since))

        return Starlette(
            routes=[
                Route("/stats", stats),
                Route("/metrics", metrics),
                Route("/healthz", healthz),
                Route("/down", down, methods=["POST"]),
                Route("/up", up, methods=["POST"]),
                Route("/reset", reset, methods=["POST"]),
                Route("/switches", switches, methods=["GET", "POST"]),
                Route("/drop", drop, methods=["POST"]),
                Route("/timeline", timeline),
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
