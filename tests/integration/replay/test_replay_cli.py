"""The ``discards`` and ``replay`` verbs as on-call runs them: a subprocess against a live service."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tests.plugins.replay import ONCALL_TOKEN, RunningReplay, Spec, StartReplay, seed

from tiergate.store import Store


async def cli(
    running: RunningReplay | None, *args: str, token: str | None = ONCALL_TOKEN
) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERGATE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    if running is not None:
        env["TIERGATE_REPLAY_URL"] = running.url
    if token:
        env["TIERGATE_REPLAY_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tiergate.replay",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_discards_and_replay_verbs(replay_store: Store, start_replay: StartReplay) -> None:
    await seed(replay_store, Spec(12, tier="tier-a", reason="max-attempts"))
    await seed(replay_store, Spec(3, tier="tier-b", reason="rejected", traffic_class="otp"))
    async with start_replay(replay_store) as running:
        code, out, err = await cli(running, "discards", "counts", "--by", "tier", "-o", "json")
        assert code == 0, err
        assert json.loads(out)["counts"] == {"tier-a": 12, "tier-b": 3}

        code, out, err = await cli(running, "discards", "list", "--tier", "tier-b", "-o", "json")
        assert code == 0, err
        assert {d["reason"] for d in json.loads(out)} == {"rejected"} and len(json.loads(out)) == 3

        code, out, err = await cli(running, "discards", "list", "--reason", "max-attempts")
        assert code == 0, err
        assert "12 discards" in out

        code, out, err = await cli(
            running, "replay", "start", "--tier", "tier-a", "--rate", "40", "--wait", "-o", "json"
        )
        assert code == 0, err
        job = json.loads(out)
        assert (job["state"], job["matched"], job["replayed"]) == ("done", 12, 12)

        code, out, err = await cli(
            running, "replay", "start", "--tier", "tier-b", "--dry-run", "--wait", "-o", "json"
        )
        assert code == 0, err
        assert (json.loads(out)["would_replay"], json.loads(out)["replayed"]) == (3, 0)

        code, out, err = await cli(running, "replay", "list", "-o", "json")
        assert code == 0, err
        assert len(json.loads(out)) == 2

        code, out, err = await cli(running, "replay", "status", job["id"])
        assert code == 0, err
        assert job["id"] in out and "done" in out

        code, out, err = await cli(running, "replay", "cancel", job["id"])
        assert code == 1 and "409" in err and "done" in err

        code, out, err = await cli(running, "discards", "list", "--from", "yesterday")
        assert code == 1 and "(from)" in err

        code, out, err = await cli(running, "discards", "list", token=None)
        assert code == 2 and "no token" in err

        code, out, err = await cli(running, "discards", "list", token="wrong")
        assert code == 1 and "401" in err
