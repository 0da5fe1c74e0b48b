"""Serve a Starlette app on uvicorn inside our own event loop, without its signal handling.

The sender and replay processes handle SIGTERM themselves (stop leasing or claiming, drain,
then stop HTTP), so uvicorn must not exit on the signal first. Shared by both services.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """A uvicorn server run as a task of the current loop."""

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        *,
        access_log: bool = False,
        sock: socket.socket | None = None,
    ) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=access_log, lifespan="off"
        )
        self._server = _QuietServer(config)
        self._sockets = None if sock is None else [sock]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving (on `sock` if one was given); returns once the socket listens."""
        self._task = asyncio.create_task(self._server.serve(sockets=self._sockets), name="http")
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("HTTP server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting and finish open requests."""
        self._server.should_exit = True
        if self._task is not None:
            await self._task


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition of the default registry, or of every process sharing
    ``PROMETHEUS_MULTIPROC_DIR`` when several serve one port (counters summed)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def openapi_endpoint(document: Path) -> Callable[[Request], Awaitable[Response]]:
    """A route serving the OpenAPI document kept in the repository at `document`."""
    body = document.read_bytes()

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return openapi


def install_stop_signals(on_stop: Callable[[], None]) -> None:
    """Call `on_stop` on SIGTERM and SIGINT."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop)
