"""``tiergate sender api --processes N``: one port, N serving processes, one set of metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.plugins.smsc import Proc, free_port, wait_http

from tiergate.store import open_store

TOKEN = "tok-a"


def api_env(store_url: str, port: int, metrics_dir: Path, processes: int = 2) -> dict[str, str]:
    return {
        "TIERGATE_STORE_URL": store_url,
        "TIERGATE_API_TOKENS": f"{TOKEN}=cust-a",
        "TIERGATE_HTTP_HOST": "127.0.0.1",
        "TIERGATE_HTTP_PORT": str(port),
        "TIERGATE_API_PROCESSES": str(processes),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        # These tests count accepts across processes; the customer rate (each process admits 1/P
        # of it) would refuse part of a fast burst, and has its own tests.
        "TIERGATE_CUSTOMER_RATE": "0",
    }


def serving_children(parent: int) -> list[int]:
    """Pids of the spawned serving processes of `parent` (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def gone(pids: list[int], within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        if not alive:
            return True
        time.sleep(0.1)
    return False


def start_api(spawn: Callable[..., Proc], env: dict[str, str]) -> tuple[Proc, list[int]]:
    proc = spawn("sender", "api", env=env, name="api")
    wait_http(f"http://127.0.0.1:{env['TIERGATE_HTTP_PORT']}/healthz", status=200)
    deadline = time.monotonic() + 30
    while len(children := serving_children(proc.popen.pid)) < int(env["TIERGATE_API_PROCESSES"]):
        assert time.monotonic() < deadline, proc.output()
        time.sleep(0.1)
    return proc, children


def accepted_total(port: int) -> float:
    with httpx.Client() as client:  # a fresh connection: any process may answer
        text = client.get(f"http://127.0.0.1:{port}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tiergate_sender_accepted_total{")
    )


async def test_processes_share_the_port_and_every_accept_is_counted_once(
    spawn: Callable[..., Proc], engine_url: str, tmp_path: Path
) -> None:
    port = free_port()
    proc, children = start_api(spawn, api_env(engine_url, port, tmp_path / "metrics"))
    assert len(children) == 2

    async def client_posts(n: int) -> list[int]:
        # One connection per client; the kernel spreads connections over the processes.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            codes = []
            for i in range(5):
                batch = {
                    "messages": [
                        {"destination": "+4915112345678", "sender_id": "Acme", "body": f"c{n} b{i} m{j}"}
                        for j in range(20)
                    ]
                }
                r = await client.post(
                    "/v1/messages:batch", json=batch, headers={"authorization": f"Bearer {TOKEN}"}
                )
                codes.append(r.status_code)
            return codes

    codes = [c for each in await asyncio.gather(*(client_posts(n) for n in range(24))) for c in each]
    assert codes == [202] * 120
    # Both processes took connections: each wrote its own counter file.
    counted_by = {p.name for p in (tmp_path / "metrics").glob("counter_*.db")}
    assert {f"counter_{pid}.db" for pid in children} <= counted_by
    # Whichever process answers /metrics reports the sum of all of them.
    assert {accepted_total(port) for _ in range(8)} == {2400.0}
    store = await open_store(engine_url)
    try:
        assert sum(s.depth for s in (await store.queue_stats()).values()) == 2400
    finally:
        await store.close()
    assert proc.terminate() == 0
    assert gone(children)


def sqlite_api(spawn: Callable[..., Proc], tmp_path: Path) -> tuple[Proc, list[int], int]:
    """A two-process API on a SQLite store: the parent, its serving children, the port."""
    port = free_port()
    proc, children = start_api(spawn, api_env(f"sqlite://{tmp_path / 'q.db'}", port, tmp_path / "metrics"))
    return proc, children, port


def test_a_process_that_dies_stops_the_others_and_the_parent_fails(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    proc, children, _ = sqlite_api(spawn, tmp_path)
    os.kill(children[0], signal.SIGKILL)
    assert proc.popen.wait(30) == 1
    assert gone(children)
    assert "Ingest API process died" in proc.output()


def test_children_of_a_killed_parent_drain_and_free_the_port(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    proc, children, port = sqlite_api(spawn, tmp_path)
    proc.kill9()
    assert gone(children)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")


def test_children_still_starting_when_the_parent_is_killed_stop_too(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    env = api_env(f"sqlite://{tmp_path / 'q.db'}", free_port(), tmp_path / "metrics")
    proc = spawn("sender", "api", env=env, name="api")
    deadline = time.monotonic() + 30
    while len(children := serving_children(proc.popen.pid)) < 2:
        assert time.monotonic() < deadline, proc.output()
        time.sleep(0.01)
    proc.kill9()  # before either has finished importing: they learn of it afterwards
    assert gone(children)
