"""Every reason tiergate writes into a condition or an Event, in one place.

Reasons are part of the API: alerts, dashboards and on-call runbooks match on them.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """A CamelCase reason for conditions and Events."""

    # Conditions and Events of the rollout
    ROLLOUT_STARTED = "RolloutStarted"
    TIER_WAITING = "TierWaiting"
    PODS_NOT_READY = "PodsNotReady"
    TIER_BAKING = "TierBaking"
    TIER_SIGNED_OFF = "TierSignedOff"
    TIER_HALTED = "TierHalted"
    TIER_ROLLED_BACK = "TierRolledBack"
    CHECK_FAILED = "CheckFailed"
    CHECK_INCONCLUSIVE = "CheckInconclusive"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    SETTLING = "RevisionSettling"
    YIELDED = "YieldedToLowerTier"
    RELEASE_NOT_SIGNED_OFF = "ReleaseNotSignedOffBelow"
    WATCHING = "Watching"
    WATCH_PASSED = "WatchPassed"
    WATCH_FAILED = "WatchFailed"
    FLEET_ROLLED_BACK = "FleetRolledBack"
    FLEET_HELD = "FleetHeld"
    UNTESTED_RELEASE = "UntestedRelease"
    # On-call controls
    PAUSED = "Paused"
    RESUMED = "Resumed"
    RETRIED = "Retried"
    PROMOTED = "Promoted"
    ABORTED = "Aborted"
    # Change control: approvals, deploy windows, freezes
    AWAITING_APPROVAL = "AwaitingApproval"
    APPROVED = "Approved"
    OUTSIDE_WINDOW = "OutsideWindow"
    FROZEN = "Frozen"
    # Steady state and errors
    AT_REVISION = "AtRevision"
    REPLICAS_NOT_READY = "ReplicasNotReady"
    INVALID_SPEC = "InvalidSpec"
    ROLLBACK_TARGET_MISSING = "RollbackTargetMissing"
    REPLAY_STARTED = "ReplayStarted"
    # Canary inside a tier
    CANARY_STARTED = "CanaryStarted"
    CANARY_PASSED = "CanaryPassed"
