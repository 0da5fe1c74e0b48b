"""Standard ``metav1.Condition`` bookkeeping: a transition time that moves only on a real change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from tiergate.api.v1alpha1 import Condition
from tiergate.domain.reasons import Reason

ConditionStatus = Literal["True", "False", "Unknown"]

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
SIGNED_OFF = "SignedOff"
HALTED = "Halted"
WATCHING = "Watching"
INVALID_SPEC = "InvalidSpec"
ROLLBACK_TARGET_MISSING = "RollbackTargetMissing"

ORDER = (READY, RECONCILING, STALLED, SIGNED_OFF, HALTED, WATCHING, INVALID_SPEC, ROLLBACK_TARGET_MISSING)


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: Reason,
    message: str,
    generation: int,
    now: datetime,
) -> tuple[Condition, ...]:
    """Return the conditions with one set; its transition time changes only if its status does."""
    previous = next((c for c in conditions if c.type == type_), None)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type_,
        status=status,
        reason=reason.value,
        message=message,
        observedGeneration=generation,
        lastTransitionTime=since,
    )
    others = [c for c in conditions if c.type != type_]
    merged = [*others, updated]
    rank = {name: i for i, name in enumerate(ORDER)}
    return tuple(sorted(merged, key=lambda c: rank.get(c.type, len(ORDER))))
