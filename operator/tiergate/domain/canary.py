"""The canary step inside a tier, as pure functions the state machine calls at its hook points.

A tier with ``healthGate.canary`` runs a new release first on a few pods (a second Deployment
beside the stable one) while the stable pods keep the signed-off release, so the tier's pod count
stays ``replicas``. The checks judge the canary pods' own series: they select by revision, and only
the canary pods run the new one. On a pass the whole tier takes the release and bakes as without a
canary; on a failure only the canary pods go away. Everything here reads and returns status, so an
operator restarted mid-canary resumes from what the API server holds.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import assert_never

from tiergate.api.v1alpha1 import (
    HALTED_PHASES,
    LIVE_PHASES,
    Canary,
    CanaryPhase,
    CanaryStatus,
    Phase,
    SenderTierSpec,
    SenderTierStatus,
)


def canary_replicas(canary: Canary | None, replicas: int) -> int:
    """How many of a tier's ``replicas`` pods run the canary; 0 when the tier has no canary step.

    A percentage rounds up to at least one pod; either way the tier keeps one stable pod at least.
    """
    if canary is None:
        return 0
    wanted = (
        canary.replicas if canary.replicas is not None else math.ceil(replicas * (canary.percent or 0) / 100)
    )
    return max(min(wanted, replicas - 1), 0)


def started(
    spec: SenderTierSpec, signed_off: str | None, revision: str, now: datetime
) -> CanaryStatus | None:
    """The canary step a rollout of ``revision`` starts with, or None when it has none.

    There is none without a signed-off revision (no stable pods to run beside) or when the tier is
    too small to keep a stable pod.
    """
    count = canary_replicas(spec.health_gate.canary, spec.replicas)
    if count < 1 or signed_off is None or signed_off == revision:
        return None
    return CanaryStatus(revision=revision, replicas=count, phase=CanaryPhase.RUNNING, startedAt=now)


def running(status: SenderTierStatus, revision: str) -> bool:
    """True while the rollout of ``revision`` is in its canary step."""
    canary = status.canary
    return (
        canary is not None
        and canary.revision == revision
        and canary.phase is CanaryPhase.RUNNING
        and status.phase in LIVE_PHASES
    )


def bake(spec: SenderTierSpec) -> str:
    """How long the canary bakes: its own ``bake``, else the tier's."""
    canary = spec.health_gate.canary
    return (canary.bake if canary is not None else None) or spec.health_gate.bake


def settled(status: SenderTierStatus, revision: str, now: datetime) -> SenderTierStatus:
    """The status with a canary step that a decision ended recorded as ended.

    A rollout that halted during its canary marks it Failed; one that stopped for another reason
    (a lower tier moved, a newer spec) drops it, since it was never judged.
    """
    canary = status.canary
    if canary is None or canary.phase is not CanaryPhase.RUNNING or status.phase in LIVE_PHASES:
        return status
    if status.phase in HALTED_PHASES and canary.revision == revision:
        return status.with_canary(canary.ended(CanaryPhase.FAILED, now))
    return status.with_canary(None)


def keeps_pods(status: SenderTierStatus, revision: str) -> bool:
    """True while the canary Deployment should keep its pods.

    It keeps them through the canary step and, once passed, while the stable Deployment takes the
    release, so the tier never has fewer pods on it than the canary had.
    """
    canary = status.canary
    if canary is None or canary.revision != revision:
        return False
    return running(status, revision) or (
        canary.phase is CanaryPhase.PASSED and status.phase is Phase.PROGRESSING
    )


def failed_here(status: SenderTierStatus, revision: str) -> bool:
    """True when the tier halted on ``revision`` in its canary step (the stable pods never ran it)."""
    canary = status.canary
    return (
        canary is not None
        and canary.revision == revision
        and canary.phase is CanaryPhase.FAILED
        and status.phase in HALTED_PHASES
    )


def message_prefix(canary: CanaryStatus, replicas: int) -> str:
    """The start of the tier's status message during its canary step."""
    return f"Canary on {canary.replicas}/{replicas} pods: "


def canary_summary(status: SenderTierStatus) -> str | None:
    """One line on the canary step of the tier's current release, for ``tiergate status``; None if none."""
    canary = status.canary
    if canary is None:
        return None
    pods = f"{canary.replicas} pod{'s' if canary.replicas != 1 else ''}"
    since = canary.started_at.strftime("%H:%M:%S")
    match canary.phase:
        case CanaryPhase.RUNNING:
            return f"canary {canary.revision} on {pods}: running since {since}"
        case CanaryPhase.PASSED:
            return f"canary {canary.revision} on {pods}: passed, whole tier followed"
        case CanaryPhase.FAILED:
            return f"canary {canary.revision} on {pods}: failed, only its pods ran it"
        case _:
            assert_never(canary.phase)
