"""SenderTier objects in every phase, made by the domain's own state machine.

Each case walks a tier through :func:`tiergate.domain.rollout.decide` (the function whose status
the operator writes) and dumps it as the API server would hold it, so the GitOps tests judge the
statuses the code produces today, not hand-written ones that could drift from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from tiergate.api.v1alpha1 import Phase, SenderTier
from tiergate.domain.checks import Observation, Result
from tiergate.domain.revision import revision_of
from tiergate.domain.rollout import Context, Decision, DeploymentView, Peer, Requests, decide

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
GENERATION = 3
TEMPLATE = {"spec": {"containers": [{"name": "worker", "image": "tiergate:2"}]}}
REVISION = revision_of(TEMPLATE)
GATE = {"progressDeadline": "60s", "bake": "30s", "interval": "10s", "failureLimit": 2, "readinessOnly": True}


@dataclass(frozen=True)
class Case:
    """A SenderTier as stored, and what Argo CD and kstatus should make of it."""

    name: str
    obj: dict[str, Any]
    argocd: str
    kstatus: str


def _tier(on_failure: str = "Rollback", order: int = 0) -> SenderTier:
    return SenderTier.model_validate(
        {
            "metadata": {"name": "bulk", "namespace": "ns", "generation": GENERATION, "uid": "u"},
            "spec": {
                "fleet": "sms-senders",
                "order": order,
                "trafficClass": "bulk",
                "replicas": 2,
                "template": TEMPLATE,
                "onFailure": on_failure,
                "healthGate": GATE,
            },
        }
    )


def _ready(rev: str | None = REVISION, ready: int = 2) -> DeploymentView:
    return DeploymentView(
        exists=True,
        revision=rev,
        replicas=2,
        total=2,
        updated=2,
        ready=ready,
        available=ready,
        generation=1,
        observed_generation=1,
    )


def _ctx(tier: SenderTier, now: datetime = T0, **kw: Any) -> Context:
    return Context(tier=tier, spec_revision=REVISION, now=now, **kw)


def _step(c: Context, **kw: Any) -> tuple[Context, Decision]:
    d = decide(replace(c, **kw))
    return c.with_status(d.status), d


def _passing() -> tuple[Observation, ...]:
    return (Observation("error-rate", Result.PASS, 0.0, "<= 0.05"),)


def _failing() -> tuple[Observation, ...]:
    return (Observation("error-rate", Result.FAIL, 0.4, "<= 0.05", "sum(rate(x))", "0.4 > 0.05"),)


def _dump(c: Context, paused: bool = False, generation: int | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = c.tier.model_dump(by_alias=True, mode="json", exclude_none=True)
    obj["metadata"] = {
        "name": c.tier.metadata.name,
        "namespace": c.tier.metadata.namespace,
        "generation": generation or c.tier.metadata.generation,
        "annotations": {"tiergate.io/paused": "true"} if paused else {},
    }
    if c.tier.status.phase is None:
        obj.pop("status")
    return obj


def _phase(c: Context) -> Phase | None:
    return c.tier.status.phase


def cases() -> list[Case]:
    """Every phase the operator writes, plus a new object and a status behind its spec."""
    out = [Case("new", _dump(_ctx(_tier())), "Progressing", "InProgress")]

    c, _ = _step(_ctx(_tier()))
    assert _phase(c) is Phase.PROGRESSING
    out.append(Case("progressing", _dump(c), "Progressing", "InProgress"))

    c, _ = _step(c, now=T0 + timedelta(seconds=5), deployment=_ready(ready=1))
    assert _phase(c) is Phase.PROGRESSING
    out.append(Case("progressing-pods-not-ready", _dump(c), "Progressing", "InProgress"))

    c, _ = _step(c, now=T0 + timedelta(seconds=10), deployment=_ready())
    assert _phase(c) is Phase.BAKING
    out.append(Case("baking", _dump(c), "Progressing", "InProgress"))
    baking = c

    c, _ = _step(c, now=T0 + timedelta(seconds=20), deployment=_ready(), observations=_passing())
    assert _phase(c) is Phase.BAKING
    out.append(Case("baking-passing", _dump(c), "Progressing", "InProgress"))

    c, _ = _step(c, now=T0 + timedelta(seconds=60), deployment=_ready(), observations=_passing())
    assert _phase(c) is Phase.SIGNED_OFF
    out.append(Case("signed-off", _dump(c), "Healthy", "Current"))
    signed = c

    c, _ = _step(signed, now=T0 + timedelta(seconds=90), deployment=_ready(ready=1))
    assert _phase(c) is Phase.SIGNED_OFF
    out.append(Case("signed-off-replicas-not-ready", _dump(c), "Progressing", "InProgress"))

    out.append(Case("signed-off-fleet-paused", _dump(signed, paused=True), "Healthy", "Current"))
    out.append(
        Case(
            "signed-off-spec-changed",
            _dump(signed, generation=GENERATION + 1),
            "Progressing",
            "InProgress",
        )
    )

    c = baking
    for i in (1, 2):
        c, _ = _step(c, now=T0 + timedelta(seconds=10 + 10 * i), deployment=_ready(), observations=_failing())
    assert _phase(c) is Phase.ROLLED_BACK
    out.append(Case("rolled-back", _dump(c), "Degraded", "Failed"))

    p, _ = _step(_ctx(_tier(on_failure="Pause")))
    p, _ = _step(p, now=T0 + timedelta(seconds=10), deployment=_ready())
    for i in (1, 2):
        p, _ = _step(p, now=T0 + timedelta(seconds=10 + 10 * i), deployment=_ready(), observations=_failing())
    assert _phase(p) is Phase.HALTED
    out.append(Case("halted", _dump(p), "Degraded", "Failed"))

    d, _ = _step(_ctx(_tier()))
    d, _ = _step(d, now=T0 + timedelta(seconds=120), deployment=_ready(ready=0))
    assert _phase(d) is Phase.ROLLED_BACK
    out.append(Case("progress-deadline-exceeded", _dump(d), "Degraded", "Failed"))

    lower = Peer("bulk", 0, REVISION, None, Phase.BAKING)
    w, _ = _step(_ctx(_tier(order=1).model_copy(update={"metadata": _renamed("standard")}), peers=(lower,)))
    assert _phase(w) is Phase.WAITING
    out.append(Case("waiting-for-lower-tier", _dump(w), "Progressing", "InProgress"))

    q, _ = _step(_ctx(_tier(), requests=Requests(paused=True)))
    assert _phase(q) is Phase.WAITING
    out.append(Case("paused", _dump(q, paused=True), "Suspended", "InProgress"))
    return out


def _renamed(name: str) -> Any:
    return _tier().metadata.model_copy(update={"name": name})
