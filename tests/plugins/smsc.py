"""Fixtures for the sender's tests: the smpp34-backed test SMSC, free ports and processes.

`smsc` is one in-process SMSC; `smscs` starts any number of SMSC processes
(``tiergate smsc``) that a test drives over their HTTP switches, kills and restarts.

Register with ``pytest_plugins = ["tests.plugins.smsc"]`` (or the module path in use).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tiergate_kits.helpers import free_port
from tiergate_kits.smsc import TestSmsc

__all__ = ["free_port"]  # re-exported: the sender and replay tests import it from here

TIERGATE = [str(Path(sys.executable).parent / "tiergate")]


@pytest.fixture
async def smsc() -> AsyncIterator[TestSmsc]:
    """An in-process test SMSC on a free loopback port, sending delivery receipts."""
    server = TestSmsc("127.0.0.1", free_port(), receipts=True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def smsc_pool() -> AsyncIterator[Callable[..., Awaitable[TestSmsc]]]:
    """Start in-process test SMSCs on free ports (keyword arguments as `TestSmsc`)."""
    started: list[TestSmsc] = []

    async def make(**options: Any) -> TestSmsc:
        server = TestSmsc("127.0.0.1", free_port(), **options)
        await server.start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            await server.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite store URL."""
    return f"sqlite://{tmp_path / 'tiergate.db'}"


class Proc:
    """A tiergate subprocess with its log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log = log
        self._out = log.open("ab")
        self.popen = subprocess.Popen(
            [*TIERGATE, *args],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def kill9(self) -> None:
        """SIGKILL and reap."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def close(self) -> None:
        """Kill if still running and close the log."""
        self.kill9()
        self._out.close()

    def output(self) -> str:
        """What the process wrote so far."""
        return self.log.read_text(errors="replace")


def bulk_worker_env(common: dict[str, str], http_port: int, smpp_port: int) -> dict[str, str]:
    """The environment of a crash-test worker of tier bulk: short leases, a window of 64."""
    return {
        **common,
        "TIERGATE_TIER": "bulk",
        "TIERGATE_REVISION": "r1",
        "TIERGATE_HTTP_PORT": str(http_port),
        "TIERGATE_UPSTREAM_URL": f"smpp://127.0.0.1:{smpp_port}",
        "TIERGATE_VISIBILITY_TIMEOUT": "5",
        "TIERGATE_WINDOW": "64",
    }


def wait_http(url: str, timeout: float = 30.0, status: int | None = None) -> httpx.Response:
    """Poll `url` until it answers (with `status`, if given)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2.0)
            if status is None or response.status_code == status:
                return response
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout}s: {last!r}")


CHUNK = b"x" * (1024 * 1024)


def post_oversized(port: int, path: str, token: str, mib: int, *, chunked: bool) -> bytes:
    """POST `mib` MiB of JSON-ish bytes over a raw socket; returns the raw answer.

    A sender thread keeps writing while the answer is read, as a server that refuses
    early may close before the body is through."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {mib * len(CHUNK) + 1}\r\n"
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n"
        ).encode()
    )

    def send() -> None:
        try:
            sock.sendall(b"1\r\n[\r\n" if chunked else b"[")
            for _ in range(mib):
                sock.sendall(b"100000\r\n" + CHUNK + b"\r\n" if chunked else CHUNK)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sender.join(30)
        sock.close()
    return answer


class Spawner:
    """Starts ``tiergate`` subprocesses with logs under `log_dir`; `close` kills them all."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []
        self._counter = iter(range(1000))

    def __call__(self, *args: str, env: dict[str, str] | None = None, name: str = "proc") -> Proc:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TIERGATE_")}
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        full_env.update(env or {})
        proc = Proc(list(args), full_env, self.log_dir / f"{name}-{next(self._counter)}.log")
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        """Kill every process still running."""
        for proc in self.procs:
            proc.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start ``tiergate`` subprocesses; all are killed at teardown."""
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.close()


class SmscProc:
    """A test SMSC process, driven over HTTP (switches, stats, timeline), killed and restarted."""

    def __init__(self, spawn: Callable[..., Proc], name: str, args: list[str]) -> None:
        self.name = name
        self.port = free_port()
        self.stats_port = free_port()
        self._spawn = spawn
        self._args = args
        self.proc = self._start()

    @property
    def url(self) -> str:
        """The SMPP URL workers bind to."""
        return f"smpp://127.0.0.1:{self.port}"

    def _start(self) -> Proc:
        argv = ["smsc", "--port", str(self.port), "--stats-port", str(self.stats_port)]
        proc = self._spawn(*argv, *self._args, env={"TIERGATE_LOG_LEVEL": "WARNING"}, name=self.name)
        wait_http(f"http://127.0.0.1:{self.stats_port}/healthz", status=200)
        return proc

    def _http(self, method: str, path: str, body: object = None) -> Any:
        response = httpx.request(method, f"http://127.0.0.1:{self.stats_port}{path}", json=body, timeout=10.0)
        response.raise_for_status()
        return response.json()

    def switch(self, **changes: object) -> dict[str, Any]:
        """Change the SMSC's switches (see `tiergate_kits.smsc`)."""
        return dict(self._http("POST", "/switches", changes))

    def stats(self) -> dict[str, Any]:
        """Its counts (accepted, throttled, duplicates, binds, ...)."""
        return dict(self._http("GET", "/stats?keys=1"))

    def accepted_bins(self, since: float) -> dict[str, int]:
        """Submits accepted per 100 ms bin (keyed by wall-clock bin number) from `since`."""
        return dict(self._http("GET", f"/timeline?since={since}")["accepted"])

    def accepted_rate(self, start: float, end: float) -> float:
        """Submits/s accepted between two wall-clock times (whole 100 ms bins)."""
        return binned_rate(self.accepted_bins(start), start, end)

    def throttled_between(self, start: float, end: float) -> int:
        """Submits answered ESME_RTHROTTLED between two wall-clock times."""
        bins = self._http("GET", f"/timeline?since={start}")["throttled"]
        return int(binned_rate(bins, start, end) * (end - start))

    def kill(self) -> None:
        """SIGKILL the SMSC: its sessions die with it."""
        self.proc.kill9()

    def restart(self) -> None:
        """Start it again on the same ports (its counts start from zero)."""
        self.proc = self._start()


def binned_rate(bins: dict[str, int], start: float, end: float, width: float = 0.1) -> float:
    """The per-second rate of 100 ms bins (keyed by wall-clock bin number) within [start, end)."""
    first, last = round(start / width), round(end / width)
    total = sum(n for k, n in bins.items() if first <= int(k) < last)
    return total / ((last - first) * width)


@pytest.fixture
def smscs(spawn: Callable[..., Proc]) -> Callable[..., SmscProc]:
    """Start test SMSC processes: ``smscs("a", "--receipts")``; all stop at teardown."""
    return lambda name, *args: SmscProc(spawn, name, list(args))


async def eventually(check: Callable[[], object], within: float = 30.0, interval: float = 0.1) -> None:
    """Await until `check()` (sync or async) is truthy, else fail."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {within}s")
        await asyncio.sleep(interval)
