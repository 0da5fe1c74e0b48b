"""The canary step inside a tier: its pure rules, and the state machine through it with a fake clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from tests.unit.domain.rollout_cases import NEW, R_NEW, R_OLD, T0, ctx, step

from tiergate.api.v1alpha1 import Canary, CanaryPhase, Phase, SenderTier, SenderTierStatus
from tiergate.domain import canary as can
from tiergate.domain.checks import Observation, Result
from tiergate.domain.rollout import Context, Decision, DeploymentView, Requests, Source, pods_observation


def _view(rev: str, pods: int) -> DeploymentView:
    """A Deployment of ``pods`` pods, all of ``rev``, all Ready."""
    return DeploymentView(
        exists=True,
        revision=rev,
        replicas=pods,
        total=pods,
        updated=pods,
        ready=pods,
        available=pods,
        generation=1,
        observed_generation=1,
    )


SIGNED = {"phase": "SignedOff", "revision": R_OLD, "signedOffRevision": R_OLD, "currentRevision": R_OLD}


def _intent(d: Decision) -> tuple[Source, str | None, int]:
    return d.deployment.source, d.deployment.revision, d.deployment.replicas


def tier(canary: dict[str, Any] | None, status: dict[str, Any] | None = None, **spec: Any) -> SenderTier:
    gate: dict[str, Any] = {
        "progressDeadline": "60s",
        "bake": "30s",
        "interval": "10s",
        "failureLimit": 2,
        "settle": "0s",
        "readinessOnly": True,
    }
    if canary is not None:
        gate["canary"] = canary
    return SenderTier.model_validate(
        {
            "metadata": {"name": "bulk", "namespace": "ns", "generation": 2, "uid": "u"},
            "spec": {
                "fleet": "f",
                "order": 0,
                "trafficClass": "bulk",
                "replicas": 4,
                "template": NEW,
                "healthGate": gate,
                **spec,
            },
            "status": SIGNED if status is None else status,
        }
    )


def passing(pods: float) -> tuple[Observation, ...]:
    return (Observation("pods-ready", Result.PASS, pods), Observation("error-rate", Result.PASS, 0.0))


def failing(pods: float) -> tuple[Observation, ...]:
    return (
        Observation("pods-ready", Result.PASS, pods),
        Observation("error-rate", Result.FAIL, 0.6, "<= 0.05", 'rate(x{revision="r"})', "0.6 > 0.05"),
    )


@pytest.mark.parametrize(
    ("canary", "replicas", "pods"),
    [
        (None, 4, 0),
        ({"replicas": 1}, 4, 1),
        ({"replicas": 3}, 4, 3),
        ({"replicas": 5}, 4, 3),
        ({"percent": 25}, 4, 1),
        ({"percent": 30}, 4, 2),
        ({"percent": 99}, 4, 3),
        ({"percent": 1}, 10, 1),
        ({"replicas": 1}, 1, 0),
        ({"percent": 50}, 0, 0),
    ],
)
def test_canary_pods_round_up_and_keep_a_stable_pod(
    canary: dict[str, Any] | None, replicas: int, pods: int
) -> None:
    model = Canary.model_validate(canary) if canary is not None else None
    assert can.canary_replicas(model, replicas) == pods


@pytest.mark.parametrize(
    "bad",
    [{}, {"replicas": 1, "percent": 10}, {"percent": 100}, {"percent": 0}, {"replicas": 0}, {"bake": "1x"}],
)
def test_the_canary_spec_takes_replicas_or_percent(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Canary.model_validate(bad)


def test_a_first_release_or_a_tier_without_canary_has_no_canary_step() -> None:
    spec = tier({"replicas": 1}).spec
    assert can.started(spec, None, R_NEW, T0) is None
    assert can.started(spec, R_NEW, R_NEW, T0) is None
    assert can.started(tier(None).spec, R_OLD, R_NEW, T0) is None
    first = can.started(spec, R_OLD, R_NEW, T0)
    assert first is not None and (first.replicas, first.phase) == (1, CanaryPhase.RUNNING)


def _started(c: Context, pods: int = 1) -> Context:
    c, d = step(c)
    assert d.status.phase is Phase.PROGRESSING
    assert d.status.canary and d.status.canary.phase is CanaryPhase.RUNNING
    assert _intent(d) == (
        Source.SIGNED_OFF,
        R_OLD,
        4 - pods,
    )
    assert d.canary is not None and (d.canary.revision, d.canary.replicas) == (R_NEW, pods)
    assert [e.reason.value for e in d.events] == ["RolloutStarted", "CanaryStarted"]
    return c


def _canary_baking(c: Context) -> Context:
    # The stable Deployment is Ready on the old revision: that is not the canary being Ready.
    c, d = step(c, now=T0 + timedelta(seconds=2), deployment=_view(R_OLD, 3))
    assert d.status.phase is Phase.PROGRESSING
    c, d = step(
        c, now=T0 + timedelta(seconds=4), deployment=_view(R_OLD, 3), canary_deployment=_view(R_NEW, 1)
    )
    assert d.status.phase is Phase.BAKING
    assert (d.status.message or "").startswith("Canary on 1/4 pods: ")
    assert d.canary is not None and d.deployment.replicas == 3
    return c


def test_a_good_release_passes_the_canary_then_the_whole_tier_bakes_and_signs_off() -> None:
    c = _canary_baking(_started(ctx(tier({"replicas": 1, "bake": "10s"}))))
    views = {"deployment": _view(R_OLD, 3), "canary_deployment": _view(R_NEW, 1)}
    assert pods_observation(replace(c, **views)).result is Result.PASS, "judged on the canary's own pods"
    t = T0 + timedelta(seconds=4)
    c, d = step(c, now=t, observations=passing(1), **views)
    assert d.status.phase is Phase.BAKING
    c, d = step(c, now=t + timedelta(seconds=10), observations=passing(1), **views)
    assert d.status.phase is Phase.PROGRESSING and not d.save_signed_off
    assert d.status.canary and d.status.canary.phase is CanaryPhase.PASSED
    assert d.status.signed_off_revision == R_OLD
    assert _intent(d) == (Source.SPEC, R_NEW, 4)
    assert d.canary is not None and d.canary.replicas == 1, "the canary keeps its pods until the tier has it"
    assert [e.reason.value for e in d.events] == ["CanaryPassed"]
    t = t + timedelta(seconds=15)
    c, d = step(c, now=t, deployment=_view(R_NEW, 4), canary_deployment=_view(R_NEW, 1))
    assert d.status.phase is Phase.BAKING and d.canary is None
    assert not (d.status.message or "").startswith("Canary")
    for i in range(4):
        c, d = step(c, now=t + timedelta(seconds=10 * i), deployment=_view(R_NEW, 4), observations=passing(4))
    assert d.status.phase is Phase.SIGNED_OFF and d.save_signed_off
    assert d.status.canary and d.status.canary.phase is CanaryPhase.PASSED
    assert can.canary_summary(d.status) == f"canary {R_NEW} on 1 pod: passed, whole tier followed"


@pytest.mark.parametrize(("on_failure", "phase"), [("Rollback", Phase.ROLLED_BACK), ("Pause", Phase.HALTED)])
def test_a_failing_canary_halts_and_only_its_pods_go_away(on_failure: str, phase: Phase) -> None:
    c = _canary_baking(_started(ctx(tier({"replicas": 1}, onFailure=on_failure))))
    views = {"deployment": _view(R_OLD, 3), "canary_deployment": _view(R_NEW, 1)}
    t = T0 + timedelta(seconds=4)
    c, d = step(c, now=t, observations=failing(1), **views)
    assert d.status.phase is Phase.BAKING and d.canary is not None
    c, d = step(c, now=t + timedelta(seconds=10), observations=failing(1), **views)
    assert d.status.phase is phase
    halt = d.status.halt
    assert halt is not None and (halt.check, halt.value, halt.threshold) == ("error-rate", 0.6, "<= 0.05")
    assert halt.query == 'rate(x{revision="r"})' and halt.window_start == T0
    assert d.status.canary and d.status.canary.phase is CanaryPhase.FAILED
    assert d.canary is None
    assert _intent(d) == (
        Source.SIGNED_OFF,
        R_OLD,
        4,
    )
    _, d = step(c, now=t + timedelta(seconds=20), deployment=_view(R_OLD, 4))
    assert d.status.phase is phase and d.canary is None
    assert (d.deployment.source, d.deployment.revision) == (Source.SIGNED_OFF, R_OLD)
    assert can.canary_summary(d.status) == f"canary {R_NEW} on 1 pod: failed, only its pods ran it"


def test_a_progress_deadline_in_the_canary_halts_on_the_canary_pods() -> None:
    c = _started(ctx(tier({"percent": 50})), pods=2)
    assert c.tier.status.canary and c.tier.status.canary.replicas == 2
    _, d = step(
        c,
        now=T0 + timedelta(seconds=61),
        deployment=_view(R_OLD, 2),
        canary_deployment=replace(_view(R_NEW, 2), ready=1, available=1),
    )
    assert d.status.phase is Phase.ROLLED_BACK
    assert d.status.halt and d.status.halt.check == "progressDeadline"
    assert d.status.halt.threshold == "2 Ready within 60s"
    assert d.canary is None and d.deployment.replicas == 4


def test_promote_in_the_canary_passes_the_canary_only() -> None:
    c = _canary_baking(_started(ctx(tier({"replicas": 1}))))
    _, d = step(
        c,
        now=T0 + timedelta(seconds=5),
        deployment=_view(R_OLD, 3),
        canary_deployment=_view(R_NEW, 1),
        requests=Requests(promote="alice"),
    )
    assert d.status.phase is Phase.PROGRESSING
    assert d.status.canary and d.status.canary.phase is CanaryPhase.PASSED
    assert d.status.handled_requests.get("promote") == "alice"
    assert [e.reason.value for e in d.events] == ["Promoted", "CanaryPassed"]


def test_a_newer_spec_mid_canary_drops_the_canary() -> None:
    c = _canary_baking(_started(ctx(tier({"replicas": 1}))))
    newer = {"spec": {"containers": [{"name": "w", "image": "tiergate:3"}]}}
    moved = c.tier.model_copy(update={"spec": c.tier.spec.model_copy(update={"template": newer})})
    c = replace(c, tier=moved, spec_revision="newer")
    _, d = step(c, now=T0 + timedelta(seconds=5), deployment=_view(R_OLD, 3))
    assert d.canary is None or d.canary.revision == "newer"
    assert d.status.canary is None or d.status.canary.revision == "newer"


def test_the_summary_names_a_running_canary() -> None:
    status = SenderTierStatus.model_validate(
        {
            "phase": "Baking",
            "canary": {"revision": "abc", "replicas": 2, "phase": "Running", "startedAt": T0.isoformat()},
        }
    )
    assert can.canary_summary(status) == "canary abc on 2 pods: running since 12:00:00"
    assert can.canary_summary(SenderTierStatus()) is None
