"""Several ingest API processes on one port, so one pod's API uses every core it has.

The API is bound by one interpreter's lock (validation, HTTP and JSON are Python), so one
process uses about one core. ``tiergate sender api --processes N`` starts N fresh
interpreters (``spawn``), each listening on the port with ``SO_REUSEPORT``, so the kernel
spreads new connections over them by their address hash (a shared socket would not: the
event loop accepts every pending connection at once, so one process took a burst of them
all). Each process has its own store connection and group commit (SQLite serialises their
commits on the file lock; PostgreSQL runs them side by side).

Metrics: the processes share a ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory
unless one is set), so ``/metrics`` from any of them sums the counters of all. A
customer's rate limit is split evenly between the processes.

The parent only supervises: SIGTERM or SIGINT is passed on and each process drains as a
single API does; if one process dies, the others are stopped and the parent exits
non-zero, so the pod restarts whole rather than serving at part capacity unnoticed.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path
from types import FrameType

from tiergate.sender import eventloop
from tiergate.sender.settings import ApiSettings

log = logging.getLogger(__name__)

STOP_GRACE = 30.0


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port beside the other processes' (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048, reuse_port=True)


def _serve(settings: ApiSettings, index: int, parent: int) -> None:
    """One serving process (runs in a fresh interpreter) of the supervising `parent` pid."""
    from tiergate.sender.api import run_api

    logging.basicConfig(
        level=os.environ.get("TIERGATE_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[{index}] %(message)s",
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns ^C into SIGTERM
    eventloop.tune_gc()
    # The parent's pid comes from the parent: read here, it could already be init's when
    # the parent was killed while this process was still starting.
    threading.Thread(target=_stop_when_orphaned, args=(parent,), daemon=True).start()
    eventloop.run(run_api(settings, sock=listening_socket(settings.host, settings.port)))


def _stop_when_orphaned(parent: int) -> None:
    """Drain and stop (SIGTERM to self) if the supervising parent is gone (killed -9)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    log.warning("Ingest API parent process gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)


def run_api_processes(settings: ApiSettings) -> int:
    """Serve with `settings.processes` processes until SIGTERM; the exit code."""
    own_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    metrics_dir = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="tiergate-api-"))
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=_serve, args=(settings, i, os.getpid()), name=f"tiergate-api-{i}", daemon=False
        )
        for i in range(settings.processes)
    ]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.is_alive() and child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.start()
        log.info("Ingest API serving port=%d processes=%s", settings.port, [c.pid for c in children])
        failed = 0
        running = list(children)
        while running:
            done = wait([c.sentinel for c in running])
            for child in [c for c in running if c.sentinel in done]:
                child.join()
                running.remove(child)
                if child.exitcode != 0 and not stopping:
                    failed = failed or 1
                    log.error(
                        "Ingest API process died pid=%s exitcode=%s; stopping the others",
                        child.pid,
                        child.exitcode,
                    )
                    stop(signal.SIGTERM, None)
        return failed
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            child.join(STOP_GRACE)
            if child.is_alive():
                child.kill()
                child.join()
        if own_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        log.info("Ingest API stopped")
