"""A body far over the limit is refused while it streams in: the real server's memory stays
bounded, for the ingest API and the replay API, chunked and with a Content-Length."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.plugins.smsc import Proc, free_port, post_oversized, wait_http

BODY_MB = 64
GROWTH_LIMIT_MB = 16


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


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
    answer = post_oversized(port, path, "tok", BODY_MB, chunked=chunked)
    growth = peak_rss_mb(proc.popen.pid) - before
    print(f"{service} chunked={chunked} peak RSS growth {growth:.1f} MiB for {BODY_MB} MiB")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert growth < GROWTH_LIMIT_MB, f"peak RSS grew {growth:.1f} MiB for a {BODY_MB} MiB body"
    wait_http(f"http://127.0.0.1:{port}/healthz")
