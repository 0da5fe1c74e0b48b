"""The canary inside a tier against a real API server, real worker processes and a real Prometheus.

Bulk runs four pods with ``healthGate.canary: {replicas: 1}``: a bad release must reach one pod
only and halt on that pod's own error series, with the stable pods untouched; a good one goes
canary, whole tier, next tier.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from kubernetes import client
from tests.plugins.operator import (
    FLEET_TIERS,
    DeploymentSampler,
    OperatorProcess,
    PodSampler,
    all_signed_off,
    gated_fleet,
    get_tier,
    patch_tier,
    phases,
    release,
    replica_set_revisions,
    serving,
    signed_off_fleet,
    wait_for,
)
from tests.plugins.prometheus import PrometheusServer

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.slow, pytest.mark.timeout(900)]

BULK_PODS = 4


@pytest.fixture
def fleet(
    kube_api: client.ApiClient,
    namespace: str,
    sender_env: dict[str, str],
    prometheus: PrometheusServer,
    operator_factory: Callable[..., OperatorProcess],
) -> Iterator[tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]]]:
    """The gated fleet, a one-pod canary on every tier, four bulk pods, signed off at its first release."""
    op = operator_factory(prometheus_url=prometheus.url).start()
    # Four bulk pods start one surge at a time on a loaded machine: more than the usual 30 s.
    docs = gated_fleet(canary={"replicas": 1}, progressDeadline="120s")
    docs[0]["spec"]["replicas"] = BULK_PODS
    assert docs[0]["metadata"]["name"] == "bulk"
    with signed_off_fleet(kube_api, namespace, sender_env["TIERGATE_STORE_URL"], docs) as first:
        yield docs, op, first


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _canary_replicas(kube_api: client.ApiClient, namespace: str, tier: str) -> int:
    dep = client.AppsV1Api(kube_api).read_namespaced_deployment(f"{tier}-canary", namespace)
    return int(dep.spec.replicas)


def test_a_failing_release_runs_on_the_canary_pod_only_and_halts_on_its_own_series(
    kube_api: client.ApiClient,
    namespace: str,
    fleet: tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]],
) -> None:
    docs, _, first = fleet
    with PodSampler(kube_api, namespace, "bulk") as pods, DeploymentSampler(kube_api, namespace) as deps:
        wait_for(lambda: len(pods.samples) > 0, timeout=10, what="a pod sample")
        stable_before = {uid for uid, rev, _ in pods.samples[0][1].values() if rev == first["bulk"]}
        bad = release(
            kube_api, namespace, docs, TIERGATE_FAULTS="fail-submits=0.6", TIERGATE_ALLOW_FAULTS="1"
        )
        wait_for(
            lambda: phases(kube_api, namespace)["bulk"] == "RolledBack", timeout=180, what="bulk rolled back"
        )
        wait_for(
            lambda: (
                serving(kube_api, namespace, "bulk", first["bulk"])
                and _canary_replicas(kube_api, namespace, "bulk") == 0
            ),
            timeout=60,
            what="bulk back on four stable pods, canary scaled away",
        )
    st = get_tier(kube_api, namespace, "bulk")["status"]
    halt = st["halt"]
    assert halt["check"] == "error-rate", halt
    assert halt["revision"] == bad["bulk"] and bad["bulk"] in halt["query"]
    assert halt["threshold"] == "<= 0.05" and halt["value"] > 0.05
    assert st["canary"]["phase"] == "Failed" and st["canary"]["replicas"] == 1
    assert len(stable_before) == BULK_PODS
    assert len(pods.ran(bad["bulk"])) == 1, "exactly one pod ever ran the bad release"
    # The stable Deployment never held the bad template, and its pods were never replaced: the
    # one that made room for the canary came back as a new pod of the same revision.
    assert not deps.ever_ran("bulk", bad["bulk"])
    assert bad["bulk"] not in replica_set_revisions(kube_api, namespace, "bulk", deployment="bulk")
    assert replica_set_revisions(kube_api, namespace, "bulk", deployment="bulk-canary") == {bad["bulk"]}
    after = {uid for uid, rev, _ in pods.samples[-1][1].values() if rev == first["bulk"]}
    assert len(stable_before & after) >= BULK_PODS - 1
    assert len(after) == BULK_PODS
    for t in ("standard", "priority"):
        assert bad[t] not in replica_set_revisions(kube_api, namespace, t)
        assert not deps.ever_ran(f"{t}-canary", bad[t])


def test_a_good_release_goes_canary_then_whole_tier_then_next_tier(
    kube_api: client.ApiClient,
    namespace: str,
    fleet: tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]],
) -> None:
    docs, _, _ = fleet
    with PodSampler(kube_api, namespace, "bulk") as pods, DeploymentSampler(kube_api, namespace) as deps:
        second = release(kube_api, namespace, docs, RELEASE="2")
        wait_for(
            lambda: all_signed_off(kube_api, namespace, second), timeout=300, what="release 2 signed off"
        )
    statuses = {t: get_tier(kube_api, namespace, t)["status"] for t in FLEET_TIERS}
    for t, st in statuses.items():
        canary = st["canary"]
        assert canary["phase"] == "Passed" and canary["revision"] == second[t], (t, canary)
        # The whole tier's rollout started when its canary passed, and signed off after.
        assert _ts(canary["endedAt"]) <= _ts(st["rollout"]["startedAt"]) <= _ts(st["rollout"]["signedOffAt"])
        assert _canary_replicas(kube_api, namespace, t) == 0
    for lower, higher in itertools.pairwise(FLEET_TIERS):
        assert _ts(statuses[higher]["canary"]["startedAt"]) >= _ts(statuses[lower]["rollout"]["signedOffAt"])
    # From the Deployments, sampled all along: bulk's canary held the release before bulk did.
    held = [i for i, (_, s) in enumerate(deps.samples) if s.get("bulk") == second["bulk"]]
    canary_held = [i for i, (_, s) in enumerate(deps.samples) if s.get("bulk-canary") == second["bulk"]]
    assert canary_held and held and canary_held[0] < held[0]
    # While bulk's own Deployment held the old template, one pod at most ran the new one.
    before = deps.samples[held[0]][0]
    assert (
        max(
            (
                sum(1 for _, rev, _ in s.values() if rev == second["bulk"])
                for at, s in pods.samples
                if at < before
            ),
            default=0,
        )
        <= 1
    )
    events = client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
    reasons = {(e.involved_object.name, e.reason) for e in events}
    for t in FLEET_TIERS:
        assert {(t, "CanaryStarted"), (t, "CanaryPassed"), (t, "TierSignedOff")} <= reasons


def test_an_operator_killed_mid_canary_resumes_the_same_canary(
    kube_api: client.ApiClient,
    namespace: str,
    fleet: tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]],
) -> None:
    docs, op, _ = fleet
    patch_tier(
        kube_api, namespace, "bulk", {"spec": {"healthGate": {"canary": {"replicas": 1, "bake": "20s"}}}}
    )
    with PodSampler(kube_api, namespace, "bulk") as pods, DeploymentSampler(kube_api, namespace) as deps:
        second = release(kube_api, namespace, docs, RELEASE="2")

        def canary_running() -> dict[str, Any] | None:
            st = get_tier(kube_api, namespace, "bulk").get("status") or {}
            canary = st.get("canary") or {}
            running = canary.get("revision") == second["bulk"] and canary.get("phase") == "Running"
            return canary if running and st.get("phase") == "Baking" else None

        before = wait_for(canary_running, timeout=120, what="bulk's canary baking")
        op.kill()
        time.sleep(2)
        op.start()
        wait_for(
            lambda: all_signed_off(kube_api, namespace, second), timeout=300, what="release 2 signed off"
        )
    canary = get_tier(kube_api, namespace, "bulk")["status"]["canary"]
    assert canary["phase"] == "Passed" and canary["startedAt"] == before["startedAt"], "the same canary step"
    held = next(at for at, s in deps.samples if s.get("bulk") == second["bulk"])
    assert (
        max(
            sum(1 for _, rev, _ in s.values() if rev == second["bulk"]) for at, s in pods.samples if at < held
        )
        == 1
    )
    events = client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
    started = [e for e in events if e.involved_object.name == "bulk" and e.reason == "CanaryStarted"]
    assert sum(e.count or 1 for e in started) == 1
