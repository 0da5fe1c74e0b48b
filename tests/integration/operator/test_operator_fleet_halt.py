"""A release judged until it is safe everywhere: a late failure caught in the watch, and a failure
only the top tier's traffic shows, each answered by the fleet policy.

Real API server, real worker processes with traffic through the real store to the test SMSC, a
real Prometheus behind the error-rate check, and the replay service for the hand-off. The faults
are the drills' own (``fail-after``, ``fail-class``): one template, so one release, for every tier.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from kubernetes import client
from tests.plugins.operator import (
    FLEET_TIERS,
    DeploymentSampler,
    OperatorProcess,
    ReplayProcess,
    Traffic,
    all_signed_off,
    create_tiers,
    gated_fleet,
    get_tier,
    phases,
    release,
    serving,
    wait_for,
)
from tests.plugins.prometheus import PrometheusServer

from tiergate.domain.revision import revision_of
from tiergate.store import DiscardFilter, MessageState, open_store

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.slow, pytest.mark.timeout(900)]

TIERS = FLEET_TIERS
# From each worker's start: long enough for the release to pass every tier's bake first.
LATE_AFTER = 75
FAULTS = {"TIERGATE_ALLOW_FAULTS": "1", "TIERGATE_MAX_ATTEMPTS": "2"}

Fleet = tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]]


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _status(kube_api: client.ApiClient, namespace: str, tier: str) -> dict[str, Any]:
    status: dict[str, Any] = get_tier(kube_api, namespace, tier).get("status") or {}
    return status


def _entry(status: dict[str, Any], revision: str) -> dict[str, Any]:
    """The tier's newest history entry for ``revision``."""
    runs = [e for e in status.get("history", []) if e["revision"] == revision]
    assert runs, f"no history entry for {revision}: {status.get('history')}"
    return dict(runs[-1])


def _signed_off(status: dict[str, Any], revision: str) -> bool:
    """Whether the tier's history has ``revision`` signed off (a wait's condition: no entry yet is False)."""
    return any(e["revision"] == revision and e.get("signedOffAt") for e in status.get("history", []))


def _events(kube_api: client.ApiClient, namespace: str, reason: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in client.CoreV1Api(kube_api).list_namespaced_event(namespace).items:
        if e.reason == reason:
            out.setdefault(e.involved_object.name, []).append(e.message)
    return out


def _watch_fleet(**gate: Any) -> list[dict[str, Any]]:
    docs = gated_fleet(watch="150s", **gate)
    for doc in docs:
        doc["spec"]["replay"] = {"auto": True}
    return docs


@pytest.fixture
def watched_fleet(
    kube_api: client.ApiClient,
    namespace: str,
    sender_env: dict[str, str],
    prometheus: PrometheusServer,
    replay_process: ReplayProcess,
    operator_factory: Callable[..., OperatorProcess],
    request: pytest.FixtureRequest,
) -> Iterator[Fleet]:
    """A fleet with a watch and the replay hand-off, signed off at its first release, traffic flowing."""
    op = operator_factory(prometheus_url=prometheus.url, extra_args=replay_process.operator_args).start()
    docs = _watch_fleet(**getattr(request, "param", {}))
    with Traffic(sender_env["TIERGATE_STORE_URL"], list(TIERS), per_second=15):
        create_tiers(kube_api, namespace, docs)
        first = {d["metadata"]["name"]: revision_of(d["spec"]["template"]) for d in docs}
        wait_for(
            lambda: all_signed_off(kube_api, namespace, first), timeout=300, what="first release signed off"
        )
        yield docs, op, first


async def _bad_discards(store_url: str, revision: str) -> list[Any]:
    async with await open_store(store_url) as store:
        page = await store.list_discards(DiscardFilter(revisions=(revision,)), limit=10_000)
        views = {d.message_id: await store.get(d.message_id) for d in page.items}
    return [(d, views[d.message_id]) for d in page.items]


def test_a_late_failure_halts_in_the_watch_and_every_tier_on_the_release_goes_back_highest_first(
    kube_api: client.ApiClient,
    namespace: str,
    sender_env: dict[str, str],
    watched_fleet: Fleet,
) -> None:
    # The release fails on every worker of bulk LATE_AFTER seconds after it starts: it passes
    # bulk's bake, goes on to standard and priority, and only the watch can catch it. Limited to
    # bulk's class so that the fleet policy, not the upper tiers' own checks, brings them back.
    docs, _, first = watched_fleet
    fault = f"fail-submits=1,fail-after={LATE_AFTER},fail-class=bulk"
    with DeploymentSampler(kube_api, namespace) as sampler:
        bad = release(kube_api, namespace, docs, TIERGATE_FAULTS=fault, **FAULTS)
        R = bad["bulk"]
        wait_for(
            lambda: all(_signed_off(_status(kube_api, namespace, t), bad[t]) for t in ("bulk", "standard")),
            timeout=LATE_AFTER + 30,
            what="the release signed off on bulk and standard before it fails",
        )
        wait_for(
            lambda: (_status(kube_api, namespace, "bulk").get("halt") or {}).get("release") == R,
            timeout=LATE_AFTER + 120,
            what=lambda: f"bulk halted on the release: {phases(kube_api, namespace)}",
        )
        ran = [t for t in TIERS if sampler.ever_ran(t, bad[t])]
        for t in ran:
            wait_for(
                functools.partial(serving, kube_api, namespace, t, first[t]),
                timeout=120,
                what=f"{t} back on its first release",
            )
    assert {"bulk", "standard"} <= set(ran), ran

    bulk = _status(kube_api, namespace, "bulk")
    halt = bulk["halt"]
    assert halt["during"] == "Watch" and halt["check"] == "error-rate", halt
    assert "haltedBy" not in halt and "cause" not in halt
    assert bulk["phase"] == "RolledBack" and bulk["signedOffRevision"] == first["bulk"]
    run = _entry(bulk, R)
    assert _ts(run["startedAt"]) < _ts(run["signedOffAt"]) < _ts(run["haltedAt"])
    halted_at = _ts(run["haltedAt"])

    rolled_back = {}
    for t in ran:
        if t == "bulk":
            continue
        st = _status(kube_api, namespace, t)
        assert st["phase"] == "RolledBack", (t, st)
        assert st["halt"]["cause"] == f"tier bulk halted release {R}", st["halt"]
        assert st["halt"]["haltedBy"] == "bulk" and st["halt"]["check"] == "fleet"
        assert st["signedOffRevision"] == first[t]
        rolled_back[t] = _ts(_entry(st, bad[t])["rolledBackAt"])
        assert rolled_back[t] >= halted_at
    # Highest order first, from the status timestamps and from the Deployments themselves.
    order = [t for t in reversed(TIERS) if t in rolled_back]
    for higher, lower in itertools.pairwise(order):
        assert rolled_back[higher] <= rolled_back[lower], rolled_back
        back = (
            sampler.back_at(higher, bad[higher], first[higher]),
            sampler.back_at(lower, bad[lower], first[lower]),
        )
        assert back[0] is not None and back[1] is not None and back[0] <= back[1], (higher, lower, back)
    fleet_events = _events(kube_api, namespace, "FleetRolledBack")
    assert set(fleet_events) == set(rolled_back), fleet_events

    # What the release discarded on bulk is replayed, and delivered once.
    wait_for(
        lambda: (_status(kube_api, namespace, "bulk").get("replayJob") or {}).get("state") == "done",
        timeout=180,
        what=lambda: f"bulk's replay done: {_status(kube_api, namespace, 'bulk').get('replayJob')}",
    )
    store_url = sender_env["TIERGATE_STORE_URL"]

    def delivered() -> list[Any] | None:
        rows = asyncio.run(_bad_discards(store_url, R))
        return rows if rows and all(v.message.state is MessageState.DELIVERED for _, v in rows) else None

    rows = wait_for(delivered, timeout=120, what="the replayed discards delivered")
    assert all(d.tier == "bulk" and d.replayed_at is not None for d, _ in rows)
    assert all(v.message.replay_count == 1 for _, v in rows)
    job = _status(kube_api, namespace, "bulk")["replayJob"]
    assert job["revision"] == R and job["replayed"] == len(rows), (job, len(rows))


@pytest.mark.parametrize("policy", ["Rollback", "Hold"])
def test_a_failure_only_priority_traffic_shows_halts_priority_and_the_policy_decides_the_rest(
    kube_api: client.ApiClient,
    namespace: str,
    watched_fleet: Fleet,
    policy: str,
) -> None:
    docs, _, first = watched_fleet
    for doc in docs:
        name = doc["metadata"]["name"]
        patch = {"spec": {"onFleetHalt": policy}}
        client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
            "tiergate.io", "v1alpha1", namespace, "sendertiers", name, patch
        )
    with DeploymentSampler(kube_api, namespace) as sampler:
        bad = release(kube_api, namespace, docs, TIERGATE_FAULTS="no-bind,fail-class=priority", **FAULTS)
        R = bad["priority"]
        wait_for(
            lambda: (_status(kube_api, namespace, "priority").get("halt") or {}).get("release") == R,
            timeout=180,
            what=lambda: f"priority halted: {phases(kube_api, namespace)}",
        )
        lower = ("bulk", "standard")
        if policy == "Rollback":
            for t in lower:
                wait_for(
                    functools.partial(serving, kube_api, namespace, t, first[t]),
                    timeout=120,
                    what=f"{t} back on its first release",
                )
        else:
            wait_for(
                lambda: all(_held(kube_api, namespace, t) for t in lower),
                timeout=60,
                what="the lower tiers hold the release",
            )
        wait_for(
            lambda: serving(kube_api, namespace, "priority", first["priority"]),
            timeout=120,
            what="priority back",
        )
    halt = _status(kube_api, namespace, "priority")["halt"]
    assert halt["check"] == "progressDeadline" and "haltedBy" not in halt, halt
    for t in lower:
        assert sampler.ever_ran(t, bad[t]), f"{t} never took the release"
        st = _status(kube_api, namespace, t)
        if policy == "Rollback":
            assert st["phase"] == "RolledBack", st
            assert st["halt"]["cause"] == f"tier priority halted release {R}", st["halt"]
            assert st["halt"]["haltedBy"] == "priority"
            assert st["signedOffRevision"] == first[t]
        else:
            assert st["phase"] == "SignedOff" and st["signedOffRevision"] == bad[t], st
            assert "halt" not in st
            assert serving(kube_api, namespace, t, bad[t]), f"{t} left the release under Hold"
    if policy == "Rollback":
        at = {t: _ts(_entry(_status(kube_api, namespace, t), bad[t])["rolledBackAt"]) for t in lower}
        assert at["standard"] <= at["bulk"], at
        standard_back = sampler.back_at("standard", bad["standard"], first["standard"])
        bulk_back = sampler.back_at("bulk", bad["bulk"], first["bulk"])
        assert standard_back is not None and bulk_back is not None, (len(sampler.samples), sampler.errors)
        assert standard_back <= bulk_back, (standard_back, bulk_back)
        assert set(_events(kube_api, namespace, "FleetRolledBack")) == set(lower)
    else:
        assert set(_events(kube_api, namespace, "FleetHeld")) == set(lower)
        assert not _events(kube_api, namespace, "FleetRolledBack")


def _held(kube_api: client.ApiClient, namespace: str, tier: str) -> bool:
    """Whether the tier says it keeps a release another tier halted on (onFleetHalt: Hold)."""
    return "onFleetHalt: Hold" in _status(kube_api, namespace, tier).get("message", "")
