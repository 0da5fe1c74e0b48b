"""The store across processes: SIGKILL after acknowledged writes, and leasing workers
that are separate processes on the same database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tiergate.store import Store, open_store

OPERATOR = str(Path(__file__).resolve().parents[3] / "operator")

ENQUEUER = """
import asyncio, sys
from tiergate.store import Encoding, NewMessage, open_store

async def main():
    store = await open_store(sys.argv[1])
    async def one(i):
        m = NewMessage("acme", "otp", "+447700900123", "ACME", f"m{i}", Encoding.GSM7, 1)
        [r] = await store.enqueue([m])
        sys.stdout.write(r.id + "\\n")
        sys.stdout.flush()
    i = 0
    while True:
        await asyncio.gather(*(one(i + k) for k in range(50)))
        i += 50

asyncio.run(main())
"""

LEASER = """
import asyncio, json, sys
from tiergate.store import Submitted, WorkerIdentity, open_store

async def main():
    store = await open_store(sys.argv[1])
    me = WorkerIdentity(sys.argv[2], "tier-0", "rev-a")
    got = []
    idle = 0
    while idle < 3:
        leased = await store.lease("otp", me, 5, 60)
        if not leased:
            idle += 1
            await asyncio.sleep(0.05)
            continue
        idle = 0
        got.extend(m.id for m in leased)
        done = await store.complete([Submitted(m.id, me.owner, "u" + m.id) for m in leased])
        assert all(done)
    await store.close()
    print(json.dumps(got))

asyncio.run(main())
"""


async def _spawn(script: str, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": OPERATOR}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )


@pytest.mark.slow
async def test_everything_acknowledged_survives_sigkill(store_url: str) -> None:
    proc = await _spawn(ENQUEUER, store_url)
    assert proc.stdout is not None
    acknowledged: list[str] = []
    while len(acknowledged) < 3000:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line, "the enqueuer died early"
        acknowledged.append(line.decode().strip())
    proc.send_signal(signal.SIGKILL)
    rest, _ = await proc.communicate()
    acknowledged.extend(rest.decode().split())
    store = await open_store(store_url)
    try:
        missing = [i for i in acknowledged if await store.get(i) is None]
        assert missing == []
        assert (await store.queue_stats())["otp"].queued >= len(acknowledged)
    finally:
        await store.close()


@pytest.mark.slow
async def test_worker_processes_never_lease_the_same_message(store_url: str) -> None:
    from store_helpers import msg

    store: Store = await open_store(store_url)
    try:
        results = await store.enqueue([msg() for _ in range(3000)])
    finally:
        await store.close()
    procs = [await _spawn(LEASER, store_url, f"w{i}") for i in range(3)]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    assert [p.returncode for p in procs] == [0, 0, 0]
    seen = [json.loads(out) for out, _ in outputs]
    flat = [i for ids in seen for i in ids]
    assert len(flat) == len(set(flat)) == 3000
    assert set(flat) == {r.id for r in results}
    assert sum(1 for ids in seen if ids) >= 2, [len(ids) for ids in seen]
