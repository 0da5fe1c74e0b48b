"""A body far over the limit is refused while it streams in: the real server's memory stays
bounded, for the ingest API and the replay API, chunked and with a Content-Length."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.plugins.smsc import Proc, free_port, wait_http

BODY_MB = 64
GROWTH_LIMIT_MB = 16
CHUNK = b"x" * (1024 * 1024)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def post_huge(port: int, path: str, token: str, *, chunked: bool) -> bytes:
    """POST `BODY_MB` MiB of JSON-ish bytes; returns what the server answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    framing = (
        "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {BODY_MB * len(CHUNK) + 1}\r\n"
    )
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n"
        ).encode()
    )

    def send() -> None:
        try:
            sock.sendall(b"1\r\n[\r\n" if chunked else b"[")
            for _ in range(BODY_MB):
                sock.sendall(b"100000\r\n" + CHUNK + b"\r\n" if chunked else CHUNK)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sender.join(30)
        sock.close()
    return answer


SERVICES = {
    "ingest": (
        ["sender", "api"],
        {"TIERGATE_API_TOKENS": "tok=cust", "TIERGATE_HTTP_PORT": "{port}"},
        "/v1/messages:batch",
    ),
    "replay": (
        ["replay", "serve"],
        {"TIERGATE_REPLAY_TOKENS": "tok=oncall", "TIERGATE_REPLAY_PORT": "{port}"},
        "/v1/replays",
    ),
}


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_huge_body_is_refused_with_413_and_memory_stays_bounded(
    spawn: Callable[..., Proc], tmp_path: Path, service: str, chunked: bool
) -> None:
    args, env, path = SERVICES[service]
    port = free_port()
    proc = spawn(
        *args,
        name=service,
        env={
            **{k: v.format(port=port) for k, v in env.items()},
            "TIERGATE_STORE_URL": f"sqlite://{tmp_path / 'tiergate.db'}",
            "TIERGATE_HTTP_HOST": "127.0.0.1",
            "TIERGATE_LOG_LEVEL": "WARNING",
        },
    )
    wait_http(f"http://127.0.0.1:{port}/healthz")
    before = peak_rss_mb(proc.popen.pid)
    answer = post_huge(port, path, "tok", chunked=chunked)
    growth = peak_rss_mb(proc.popen.pid) - before
    print(f"{service} chunked={chunked} peak RSS growth {growth:.1f} MiB for {BODY_MB} MiB")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert growth < GROWTH_LIMIT_MB, f"peak RSS grew {growth:.1f} MiB for a {BODY_MB} MiB body"
    wait_http(f"http://127.0.0.1:{port}/healthz")
