"""The fleets the drill builds: the same workers in both modes, gated only under tiergate."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from tiergate.api.v1alpha1 import SenderTier
from tiergate.domain.canary import canary_replicas
from tiergate.domain.revision import revision_of
from tiergate.domain.workload import LABEL_REVISION
from tiergate.sender.faults import parse_faults
from tiergate_kits.drill.cli import chosen_modes, chosen_scenarios, settings_for
from tiergate_kits.drill.scenario import (
    CANARY_MODE,
    SCENARIOS,
    SHORT,
    Sampler,
    bad_env,
    baseline_deployment,
    fail_after,
    fleet_docs,
    runs_in,
)
from tiergate_kits.helpers import with_env


def _env(container: dict[str, object]) -> dict[str, object]:
    return {e["name"]: e.get("value") for e in container["env"]}  # type: ignore[attr-defined,index]


@pytest.mark.parametrize("mode", ["baseline", "tiergate"])
def test_the_fleet_is_three_ordered_tiers_with_the_drill_gate(mode: str) -> None:
    settings = settings_for(False)
    docs = fleet_docs(settings, mode)
    assert [(d["metadata"]["name"], d["spec"]["order"], d["spec"]["trafficClass"]) for d in docs] == [
        ("bulk", 0, "bulk"),
        ("standard", 1, "standard"),
        ("priority", 2, "priority"),
    ]
    for doc in docs:
        SenderTier.model_validate(doc)  # a valid SenderTier
        gate = doc["spec"]["healthGate"]
        assert gate["progressDeadline"] == f"{settings.progress_deadline}s"
        assert [c["name"] for c in gate["checks"]] == ["deep-ready", "error-rate"]
        assert doc["spec"]["replay"] == {"auto": mode == "tiergate"}
        assert doc["spec"]["replicas"] == settings.replicas
        assert _env(doc["spec"]["template"]["spec"]["containers"][0])["TIERGATE_MAX_ATTEMPTS"] == "3"


def test_both_modes_run_the_same_worker_template() -> None:
    settings = settings_for(False)
    base = [d["spec"]["template"] for d in fleet_docs(settings, "baseline")]
    gated = [d["spec"]["template"] for d in fleet_docs(settings, "tiergate")]
    assert base == gated


@pytest.mark.parametrize("short", [False, True])
def test_the_canary_fleet_runs_a_quarter_of_four_pods_per_tier(short: bool) -> None:
    settings = settings_for(short)
    plain = fleet_docs(settings, "tiergate")
    docs = fleet_docs(settings, CANARY_MODE)
    for doc, other in zip(docs, plain, strict=True):
        tier = SenderTier.model_validate(doc)
        assert doc["spec"]["replicas"] == 4
        assert doc["spec"]["healthGate"]["canary"] == {"percent": 25}
        assert canary_replicas(tier.spec.health_gate.canary, tier.spec.replicas) == 1
        assert doc["spec"]["replay"] == {"auto": True}
        assert doc["spec"]["template"] == other["spec"]["template"]
        assert other["spec"]["replicas"] == settings.replicas  # the plain run keeps its pods
        assert "canary" not in other["spec"]["healthGate"]
    assert fleet_docs(settings_for(False, replicas=8), CANARY_MODE)[0]["spec"]["replicas"] == 8


def test_the_canary_mode_runs_in_fail_share_only() -> None:
    assert [s for s in SCENARIOS if runs_in(CANARY_MODE, s)] == ["fail-share"]
    assert all(runs_in(m, s) for m in ("baseline", "tiergate") for s in SCENARIOS)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (None, ["baseline", "tiergate", "argo-rollouts"]),
        ("every", ["baseline", "tiergate", "argo-rollouts"]),
        ("all", ["baseline", "tiergate", "argo-rollouts", CANARY_MODE]),
        (CANARY_MODE, [CANARY_MODE]),
        ("tiergate, tiergate-canary", ["tiergate", CANARY_MODE]),
    ],
)
def test_the_modes_by_default_are_the_three_contenders_and_the_canary_run_by_name(
    mode: str | None, expected: list[str]
) -> None:
    assert chosen_modes(mode) == expected


@pytest.mark.parametrize(
    ("scenario", "short", "fault", "after"),
    [
        ("no-bind", False, "no-bind", 0.0),
        ("fail-share", False, "fail-submits=0.5", 0.0),
        ("late-failure", False, "fail-submits=0.5,fail-after=120", 120.0),
        ("late-failure", True, "fail-submits=0.5,fail-after=30", 30.0),
    ],
)
def test_the_bad_release_is_the_fault_switch(scenario: str, short: bool, fault: str, after: float) -> None:
    settings = settings_for(short)
    env = bad_env(scenario, settings)
    assert env == {"TIERGATE_FAULTS": fault, "TIERGATE_ALLOW_FAULTS": "1"}
    assert (
        parse_faults(env["TIERGATE_FAULTS"], allowed=True).fail_after
        == after
        == fail_after(scenario, settings)
    )


@pytest.mark.parametrize("short", [False, True])
def test_the_late_failure_falls_inside_the_watch(short: bool) -> None:
    # A tier signs off a bake after Ready, and its checks must still run when the fault starts.
    settings = settings_for(short)
    gate = fleet_docs(settings, "tiergate")[0]["spec"]["healthGate"]
    assert gate["watch"] == f"{settings.watch}s"
    assert settings.bake < settings.late_after
    assert settings.late_after + settings.interval * settings.failure_limit < settings.watch


@pytest.mark.parametrize(
    ("scenario", "short", "expected"),
    [
        (None, False, ["no-bind", "fail-share", "late-failure"]),
        (None, True, ["no-bind", "fail-share"]),
        ("all", True, ["no-bind", "fail-share", "late-failure"]),
        ("late-failure", True, ["late-failure"]),
    ],
)
def test_short_leaves_the_late_failure_out_unless_asked(
    scenario: str | None, short: bool, expected: list[str]
) -> None:
    assert chosen_scenarios(scenario, short) == expected


def test_the_sampler_finds_when_each_tier_was_restored_and_the_first_bad_start() -> None:
    sampler = Sampler(client.ApiClient(), "ns", Path("/nonexistent.db"), tiergate=True)
    sampler.deployments = [
        (1.0, {"bulk": ("good", 2, 2), "priority": ("good", 2, 2)}),
        (2.0, {"bulk": ("bad", 2, 2), "priority": ("bad", 2, 1)}),
        (3.0, {"bulk": ("bad", 2, 2), "priority": ("good", 2, 1)}),
        (4.0, {"bulk": ("good", 2, 1), "priority": ("good", 2, 2)}),
        (5.0, {"bulk": ("good", 2, 2), "priority": ("good", 2, 2)}),
    ]
    sampler.ready = [(at, {}) for at, _ in sampler.deployments]
    bad = {"bulk": "bad", "priority": "bad", "standard": "bad"}
    good = {"bulk": "good", "priority": "good", "standard": "good"}
    assert sampler.restored(bad, good) == {"priority": 4.0, "bulk": 5.0}
    sampler.started = {("bulk", "good"): 0.5, ("bulk", "bad"): 2.2, ("priority", "bad"): 2.1}
    assert sampler.first_start(bad) == 2.1
    assert sampler.first_start({"standard": "bad"}) is None


def test_a_tier_is_not_restored_while_pods_of_the_bad_release_are_still_ready() -> None:
    sampler = Sampler(client.ApiClient(), "ns", Path("/nonexistent.db"), tiergate=True)
    # Rolled back at 3.0, but the Deployment's Ready count still holds the draining bad pods.
    sampler.deployments = [
        (1.0, {"bulk": ("good", 2, 2)}),
        (2.0, {"bulk": ("bad", 2, 2)}),
        (3.0, {"bulk": ("good", 2, 2)}),
        (4.0, {"bulk": ("good", 2, 2)}),
        (5.0, {"bulk": ("good", 2, 2)}),
    ]
    sampler.ready = [
        (1.0, {"bulk": {"good"}}),
        (2.0, {"bulk": {"bad"}}),
        (3.0, {"bulk": {"bad"}}),
        (4.0, {"bulk": {"bad", "good"}}),
        (5.0, {"bulk": {"good"}}),
    ]
    assert sampler.restored({"bulk": "bad"}, {"bulk": "good"}) == {"bulk": 5.0}


def test_a_tier_whose_bad_release_ran_only_on_its_canary_is_restored_when_the_canary_is_gone() -> None:
    sampler = Sampler(client.ApiClient(), "ns", Path("/nonexistent.db"), tiergate=True)
    sampler.deployments = [
        (1.0, {"bulk": ("good", 4, 4)}),
        (2.0, {"bulk": ("good", 3, 3), "bulk-canary": ("bad", 1, 0)}),
        (3.0, {"bulk": ("good", 3, 3), "bulk-canary": ("bad", 1, 1)}),
        (4.0, {"bulk": ("good", 4, 3), "bulk-canary": ("bad", 0, 1)}),
        (5.0, {"bulk": ("good", 4, 3), "bulk-canary": ("bad", 0, 0)}),
        (6.0, {"bulk": ("good", 4, 4), "bulk-canary": ("bad", 0, 0)}),
        (7.0, {"standard": ("good", 4, 4), "standard-canary": ("good", 0, 0)}),
    ]
    sampler.ready = [(at, {"bulk": {"good"}, "standard": {"good"}}) for at, _ in sampler.deployments]
    bad = {"bulk": "bad", "standard": "bad"}
    good = {"bulk": "good", "standard": "good"}
    assert sampler.restored(bad, good) == {"bulk": 6.0}
    sampler.counts = [
        (2.0, {("bulk", "good"): 4, ("bulk", "bad"): 1}),
        (3.0, {("bulk", "good"): 3, ("bulk", "bad"): 1, ("standard", "good"): 4}),
    ]
    assert sampler.most_pods(bad) == {"bulk": 1, "standard": 0}


def test_the_baseline_deployment_is_2020_plain() -> None:
    doc = fleet_docs(settings_for(False), "baseline")[0]
    bad = with_env(doc["spec"]["template"], **bad_env("no-bind", settings_for(False)))
    dep = baseline_deployment(doc, "ns", bad)
    assert "ownerReferences" not in dep["metadata"]
    assert "strategy" not in dep["spec"]  # the default rolling update
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert dep["spec"]["template"]["metadata"]["labels"][LABEL_REVISION] == revision_of(bad)
    assert _env(container)["TIERGATE_FAULTS"] == "no-bind"
    assert _env(container)["TIERGATE_TIER"] == "bulk"


def test_short_settings_shorten_and_overrides_win() -> None:
    short = settings_for(True, rate=50.0, detection_delay=None)
    assert short.rate == 50.0
    assert short.detection_delay == SHORT["detection_delay"]
    assert short.max_queue_depth == int(short.queue_seconds * 50.0)
    assert settings_for(False).detection_delay == 120.0
