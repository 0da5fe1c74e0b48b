"""Tiered, gated rollouts against a real API server, real worker processes and a real Prometheus.

Every scenario runs the example fleet's three tiers with steady traffic flowing through the real
store to the test SMSC, so the health stack judges what the workers really did.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.plugins.operator import (
    FLEET_TIERS,
    DeploymentSampler,
    OperatorProcess,
    all_signed_off,
    gated_fleet,
    get_tier,
    patch_tier,
    phases,
    release,
    replica_set_revisions,
    serving,
    set_gate,
    signed_off_fleet,
    wait_for,
)
from tests.plugins.operator import (
    tiergate_cli as _cli,
)
from tests.plugins.prometheus import PrometheusServer

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.slow, pytest.mark.timeout(900)]

TIERS = FLEET_TIERS


@pytest.fixture
def fleet(
    kube_api: client.ApiClient,
    namespace: str,
    sender_env: dict[str, str],
    prometheus: PrometheusServer,
    operator_factory: Callable[..., OperatorProcess],
) -> Iterator[tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]]]:
    """A gated fleet signed off at its first revision, with traffic flowing and an operator running."""
    op = operator_factory(prometheus_url=prometheus.url).start()
    docs = gated_fleet()
    with signed_off_fleet(kube_api, namespace, sender_env["TIERGATE_STORE_URL"], docs) as first:
        yield docs, op, first


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_good_release_reaches_the_tiers_strictly_in_order(
    kube_api: client.ApiClient,
    namespace: str,
    fleet: tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]],
) -> None:
    docs, _, _ = fleet
    with DeploymentSampler(kube_api, namespace) as sampler:
        second = release(kube_api, namespace, docs, RELEASE="2")
        wait_for(
            lambda: all_signed_off(kube_api, namespace, second), timeout=240, what="release 2 signed off"
        )
    rollouts = {t: get_tier(kube_api, namespace, t)["status"]["rollout"] for t in TIERS}
    for lower, higher in itertools.pairwise(TIERS):
        assert _ts(rollouts[higher]["startedAt"]) >= _ts(rollouts[lower]["signedOffAt"]), (lower, higher)
    # And from the Deployments themselves, sampled all along: a tier held the new template only
    # once the tier below had it signed off.
    for i, (_, sample) in enumerate(sampler.samples):
        for lower, higher in itertools.pairwise(TIERS):
            if sample.get(higher) == second[higher]:
                assert sample.get(lower) == second[lower], f"sample {i}: {higher} moved before {lower}"
    events = client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
    reasons = {(e.involved_object.name, e.reason) for e in events}
    for t in TIERS:
        assert (t, "TierSignedOff") in reasons and (t, "RolloutStarted") in reasons


# kubectl apply -f and GitOps syncs send a fleet's tiers in name order, not in tier order.
@pytest.mark.parametrize("highest_first", [False, True], ids=["in-tier-order", "highest-first"])
def test_workers_that_never_become_ready_halt_tier_0_which_rolls_back(
    kube_api: client.ApiClient,
    namespace: str,
    fleet: tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]],
    highest_first: bool,
) -> None:
    docs, _, first = fleet
    set_gate(kube_api, namespace, docs, progressDeadline="12s")
    applied = docs[::-1] if highest_first else docs
    with DeploymentSampler(kube_api, namespace) as sampler:
        bad = release(kube_api, namespace, applied, TIERGATE_FAULTS="no-bind", TIERGATE_ALLOW_FAULTS="1")
        wait_for(
            lambda: phases(kube_api, namespace)["bulk"] == "RolledBack", timeout=90, what="bulk rolled back"
        )
        wait_for(
            lambda: serving(kube_api, namespace, "bulk", first["bulk"]),
            timeout=60,
            what="bulk back on its signed-off revision",
        )
        time.sleep(3)
    bulk = get_tier(kube_api, namespace, "bulk")["status"]
    assert bulk["halt"]["check"] == "progressDeadline" and bulk["halt"]["revision"] == bad["bulk"]
    assert bulk["signedOffRevision"] == first["bulk"]
    for t in ("standard", "priority"):
        st = get_tier(kube_api, namespace, t)["status"]
        assert st["phase"] == "Waiting" and st["waitingFor"] == "bulk", st
        assert not sampler.ever_ran(t, bad[t]), f"{t} held the bad template"
        assert bad[t] not in replica_set_revisions(kube_api, namespace, t), f"{t} ran the bad template"


def test_a_release_applied_to_priority_alone_waits_and_the_override_rolls_it(
    kube_api: client.ApiClient,
    namespace: str,
    kubeconfig_path: Path,
    fleet: tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]],
) -> None:
    docs, _, first = fleet
    by_name = {d["metadata"]["name"]: d for d in docs}
    with DeploymentSampler(kube_api, namespace) as sampler:
        new = release(kube_api, namespace, [by_name["priority"]], RELEASE="p1")["priority"]
        wait_for(
            lambda: phases(kube_api, namespace)["priority"] == "Waiting", timeout=60, what="priority waits"
        )
        time.sleep(4)
        st = get_tier(kube_api, namespace, "priority")["status"]
        assert st["phase"] == "Waiting" and st["waitingFor"] == "bulk", st
        assert st["release"] == new and f"apply release {new} to tier bulk first" in st["message"], st
        assert not sampler.ever_ran("priority", new), "priority took a release no lower tier ran"
        events = client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
        waits = [
            e
            for e in events
            if e.involved_object.name == "priority"
            and e.reason == "ReleaseNotSignedOffBelow"
            and new in e.message
        ]
        assert waits and "tier bulk" in waits[0].message, [e.message for e in events]
        _cli(kubeconfig_path, namespace, "promote", "priority", "--untested-release", "--who", "carol")
        wait_for(
            lambda: all_signed_off(kube_api, namespace, {**first, "priority": new}),
            timeout=120,
            what="priority signed off on the override",
        )
    st = get_tier(kube_api, namespace, "priority")["status"]
    assert st["untestedRelease"]["release"] == new and st["untestedRelease"]["by"].startswith("carol@"), st
    assert serving(kube_api, namespace, "priority", new)
    events = client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
    override = [e for e in events if e.involved_object.name == "priority" and e.reason == "UntestedRelease"]
    assert override and override[0].type == "Warning" and "carol@" in override[0].message, override
    for t in ("bulk", "standard"):
        assert get_tier(kube_api, namespace, t)["status"]["signedOffRevision"] == first[t]


def test_a_lower_tier_superseded_mid_bake_keeps_the_higher_tiers_off_that_release(
    kube_api: client.ApiClient,
    namespace: str,
    fleet: tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]],
) -> None:
    docs, _, _ = fleet
    by_name = {d["metadata"]["name"]: d for d in docs}
    patch_tier(kube_api, namespace, "bulk", {"spec": {"healthGate": {"bake": "20s"}}})
    with DeploymentSampler(kube_api, namespace) as sampler:
        third = release(kube_api, namespace, docs, RELEASE="3")
        wait_for(lambda: phases(kube_api, namespace)["bulk"] == "Baking", timeout=90, what="bulk baking 3")
        fourth = release(kube_api, namespace, [by_name["bulk"]], RELEASE="4")
        wait_for(
            lambda: (
                (get_tier(kube_api, namespace, "bulk").get("status") or {}).get("signedOffRevision")
                == fourth["bulk"]
            ),
            timeout=120,
            what="bulk signed off release 4",
        )
        time.sleep(4)
        for t in ("standard", "priority"):
            st = get_tier(kube_api, namespace, t)["status"]
            assert st["phase"] == "Waiting" and st["waitingFor"] in ("bulk", "standard"), st
        assert (
            f"has not run release {third['standard']}"
            in get_tier(kube_api, namespace, "standard")["status"]["message"]
        )
        fourth |= release(kube_api, namespace, [by_name["standard"], by_name["priority"]], RELEASE="4")
        wait_for(
            lambda: all_signed_off(kube_api, namespace, fourth), timeout=240, what="release 4 everywhere"
        )
    bulk = get_tier(kube_api, namespace, "bulk")["status"]
    assert [h["release"] for h in bulk["history"]][-2:] == [third["bulk"], fourth["bulk"]]
    assert "signedOffAt" not in bulk["history"][-2], "release 3 was never signed off on bulk"
    for t in ("standard", "priority"):
        assert not sampler.ever_ran(t, third[t]), f"{t} ran release 3, which no lower tier signed off"
        assert third[t] not in replica_set_revisions(kube_api, namespace, t)


def _runs(sampler: DeploymentSampler, tier: str) -> list[str | None]:
    """The revisions a tier's Deployment held, in order, each run once."""
    out: list[str | None] = []
    for _, sample in sampler.samples:
        if tier in sample and (not out or out[-1] != sample[tier]):
            out.append(sample[tier])
    return out


def test_operator_killed_during_a_fleet_rollback_ends_with_one_rollback_per_tier(
    kube_api: client.ApiClient,
    namespace: str,
    kubeconfig_path: Path,
    fleet: tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]],
) -> None:
    # priority halts on the release (an abort mid-bake) after bulk and standard signed it off:
    # the fleet policy rolls them back too, while the operator is killed with SIGKILL again and again.
    docs, op, first = fleet
    patch_tier(kube_api, namespace, "priority", {"spec": {"healthGate": {"bake": "10m"}}})
    with DeploymentSampler(kube_api, namespace) as sampler:
        second = release(kube_api, namespace, docs, RELEASE="8")
        wait_for(
            lambda: phases(kube_api, namespace)["priority"] == "Baking", timeout=240, what="priority baking"
        )
        _cli(kubeconfig_path, namespace, "abort", "priority", "--who", "dave")
        for pause in (0.3, 0.6, 1.2, 2.0, 3.0):
            time.sleep(pause)
            op.kill()
            op.start()
        wait_for(
            lambda: all(serving(kube_api, namespace, t, first[t]) for t in TIERS),
            timeout=120,
            what="every tier back on its signed-off release",
        )
        time.sleep(5)
    assert phases(kube_api, namespace) == dict.fromkeys(TIERS, "RolledBack")
    bad = second["priority"]
    for t in TIERS:
        st = get_tier(kube_api, namespace, t)["status"]
        assert st["signedOffRevision"] == first[t] and st["currentRevision"] == first[t], st
        assert st["halt"]["release"] == bad, st["halt"]
        runs = [h for h in st["history"] if h["release"] == bad]
        assert len(runs) == 1 and "rolledBackAt" in runs[0], runs
        assert _runs(sampler, t)[-2:] == [second[t], first[t]], f"{t}: {_runs(sampler, t)}"
        assert _runs(sampler, t).count(first[t]) == 2, f"{t} rolled back more than once: {_runs(sampler, t)}"
        if t != "priority":
            assert st["halt"]["cause"] == f"tier priority halted release {bad}", st["halt"]
            assert st["halt"]["haltedBy"] == "priority" and st["halt"]["check"] == "fleet"
    events = client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
    for t in ("bulk", "standard"):
        rolled = [e for e in events if e.involved_object.name == t and e.reason == "FleetRolledBack"]
        assert sum(e.count or 1 for e in rolled) == 1, [(e.message, e.count) for e in rolled]


def test_failing_sends_are_caught_by_the_prometheus_check(
    kube_api: client.ApiClient,
    namespace: str,
    fleet: tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]],
) -> None:
    docs, op, _ = fleet
    bad = release(kube_api, namespace, docs, TIERGATE_FAULTS="fail-submits=0.6", TIERGATE_ALLOW_FAULTS="1")
    wait_for(
        lambda: phases(kube_api, namespace)["bulk"] == "RolledBack", timeout=120, what="bulk rolled back"
    )
    halt = get_tier(kube_api, namespace, "bulk")["status"]["halt"]
    assert halt["check"] == "error-rate", halt
    assert halt["revision"] == bad["bulk"]
    assert halt["threshold"] == "<= 0.05" and halt["value"] > 0.05
    assert 'result="error"' in halt["query"] and bad["bulk"] in halt["query"]
    assert halt["windowStart"] <= halt["windowEnd"]
    for t in ("standard", "priority"):
        assert bad[t] not in replica_set_revisions(kube_api, namespace, t)
    halted = [
        line
        for line in op.metrics().splitlines()
        if line.startswith("tiergate_operator_rollouts_halted_total{") and 'check="error-rate"' in line
    ]
    assert halted and float(halted[0].rsplit(" ", 1)[1]) >= 1


def test_prometheus_down_during_a_bake_never_signs_off_and_halts_at_the_limit(
    kube_api: client.ApiClient,
    namespace: str,
    prometheus: PrometheusServer,
    fleet: tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]],
) -> None:
    docs, _, _ = fleet
    patch_tier(
        kube_api, namespace, "bulk", {"spec": {"healthGate": {"bake": "30s", "inconclusiveLimit": "8s"}}}
    )
    release(kube_api, namespace, docs[:1], RELEASE="3")
    wait_for(lambda: phases(kube_api, namespace)["bulk"] == "Baking", timeout=60, what="bulk baking")
    prometheus.stop()
    try:
        wait_for(lambda: phases(kube_api, namespace)["bulk"] == "RolledBack", timeout=60, what="bulk halted")
    finally:
        prometheus.start()
    st = get_tier(kube_api, namespace, "bulk")["status"]
    assert "signedOffAt" not in (st.get("rollout") or {})
    assert "inconclusive" in st["halt"]["message"]


def test_operator_killed_again_and_again_mid_rollout_ends_where_it_would_have(
    kube_api: client.ApiClient,
    namespace: str,
    fleet: tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]],
) -> None:
    docs, op, first = fleet
    set_gate(kube_api, namespace, docs, progressDeadline="12s")
    bad = release(kube_api, namespace, docs, TIERGATE_FAULTS="no-bind", TIERGATE_ALLOW_FAULTS="1")
    deadline = time.monotonic() + 90
    kills = 0
    pauses = itertools.cycle((2.5, 4.0, 3.2, 5.5))
    while time.monotonic() < deadline and phases(kube_api, namespace)["bulk"] != "RolledBack":
        time.sleep(next(pauses))
        op.kill()
        kills += 1
        op.start()
    assert phases(kube_api, namespace)["bulk"] == "RolledBack"
    # Keep killing through the rollback itself.
    for pause in (0.3, 1.5, 2.5):
        time.sleep(pause)
        op.kill()
        kills += 1
        op.start()
    wait_for(
        lambda: serving(kube_api, namespace, "bulk", first["bulk"]),
        timeout=60,
        what="bulk rolled back despite the kills",
    )
    time.sleep(4)
    assert phases(kube_api, namespace) == {"bulk": "RolledBack", "standard": "Waiting", "priority": "Waiting"}
    for t in ("standard", "priority"):
        assert bad[t] not in replica_set_revisions(kube_api, namespace, t)
    assert kills >= 4
    # Then a good release goes through as if nothing had happened.
    set_gate(kube_api, namespace, docs, progressDeadline="90s")
    good = release(kube_api, namespace, docs, TIERGATE_FAULTS="", RELEASE="4")
    wait_for(
        lambda: all_signed_off(kube_api, namespace, good), timeout=240, what="good release after the kills"
    )


def test_on_call_controls_through_the_cli(
    kube_api: client.ApiClient,
    namespace: str,
    kubeconfig_path: Path,
    fleet: tuple[list[dict[str, Any]], OperatorProcess, dict[str, str]],
) -> None:
    docs, _, _ = fleet
    # pause: a release waits at the first tier; resume lets it through.
    _cli(kubeconfig_path, namespace, "pause", "sms-senders")
    second = release(kube_api, namespace, docs, RELEASE="5")
    wait_for(lambda: phases(kube_api, namespace)["bulk"] == "Waiting", timeout=30, what="paused fleet waits")
    time.sleep(3)
    assert phases(kube_api, namespace)["bulk"] == "Waiting"
    _cli(kubeconfig_path, namespace, "resume", "sms-senders")
    wait_for(
        lambda: all_signed_off(kube_api, namespace, second), timeout=240, what="resumed release signed off"
    )

    # promote: skip the rest of a long bake, recorded with who asked.
    set_gate(kube_api, namespace, docs, bake="10m")
    release(kube_api, namespace, docs[:1], RELEASE="6")
    wait_for(lambda: phases(kube_api, namespace)["bulk"] == "Baking", timeout=60, what="bulk baking")
    _cli(kubeconfig_path, namespace, "promote", "bulk", "--who", "alice")
    wait_for(lambda: phases(kube_api, namespace)["bulk"] == "SignedOff", timeout=30, what="promoted")
    assert get_tier(kube_api, namespace, "bulk")["status"]["rollout"]["promotedBy"].startswith("alice@")

    # abort: roll the current tier back now.
    release(kube_api, namespace, docs[:1], RELEASE="7")
    wait_for(lambda: phases(kube_api, namespace)["bulk"] == "Baking", timeout=60, what="bulk baking again")
    _cli(kubeconfig_path, namespace, "abort", "bulk", "--who", "bob")
    wait_for(lambda: phases(kube_api, namespace)["bulk"] == "RolledBack", timeout=30, what="aborted")
    assert get_tier(kube_api, namespace, "bulk")["status"]["halt"]["check"] == "abort"

    # retry: the same revision goes again (and, promoted, signs off).
    _cli(kubeconfig_path, namespace, "retry", "bulk")
    wait_for(
        lambda: phases(kube_api, namespace)["bulk"] in ("Progressing", "Baking"), timeout=30, what="retried"
    )
    _cli(kubeconfig_path, namespace, "promote", "bulk")
    wait_for(
        lambda: phases(kube_api, namespace)["bulk"] == "SignedOff", timeout=60, what="retried and promoted"
    )

    table = _cli(kubeconfig_path, namespace, "status", "sms-senders")
    assert "bulk" in table and "SignedOff" in table
    rows = json.loads(_cli(kubeconfig_path, namespace, "status", "sms-senders", "-o", "json"))
    assert [r["name"] for r in rows] == list(TIERS)
