"""Fixtures for the sender's tests: the smpp34-backed test SMSC, free ports and processes.

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
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tiergate.sender.smsc import TestSmsc

TIERGATE = [str(Path(sys.executable).parent / "tiergate")]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start ``tiergate`` subprocesses; all are killed at teardown."""
    procs: list[Proc] = []
    counter = iter(range(1000))

    def start(*args: str, env: dict[str, str] | None = None, name: str = "proc") -> Proc:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TIERGATE_")}
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        full_env.update(env or {})
        proc = Proc(list(args), full_env, tmp_path / f"{name}-{next(counter)}.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.close()


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
