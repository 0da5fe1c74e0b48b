"""The operator's own Prometheus metrics: what on-call and the alert rules read about rollouts."""

from __future__ import annotations

import contextlib
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

from tiergate.api.v1alpha1 import Phase, SenderTierStatus

TIER_PHASE = Gauge(
    "tiergate_operator_tier_phase",
    "1 for the phase each SenderTier is in, 0 for the others",
    ["namespace", "fleet", "tier", "phase"],
)
ROLLOUTS_STARTED = Counter(
    "tiergate_operator_rollouts_started_total",
    "Revisions started in a tier",
    ["namespace", "fleet"],
)
ROLLOUTS_SIGNED_OFF = Counter(
    "tiergate_operator_rollouts_signed_off_total", "Revisions signed off", ["namespace", "fleet"]
)
ROLLOUTS_HALTED = Counter(
    "tiergate_operator_rollouts_halted_total",
    "Revisions halted, by the check that halted them",
    ["namespace", "fleet", "check"],
)
ROLLOUTS_YIELDED = Counter(
    "tiergate_operator_rollouts_yielded_total",
    "Rollouts stopped and put back on the signed-off revision because a lower tier halted or moved",
    ["namespace", "fleet"],
)
EVALUATIONS = Counter(
    "tiergate_operator_gate_evaluations_total",
    "Evaluations of a health stack by result",
    ["namespace", "fleet", "result"],
)
TIME_TO_DETECT = Histogram(
    "tiergate_operator_time_to_detect_seconds",
    "From a revision reaching a tier to that tier halting it",
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600),
)
RECONCILE_SECONDS = Histogram(
    "tiergate_operator_reconcile_duration_seconds",
    "Duration of one reconcile of one SenderTier",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LAST_RECONCILE = Gauge(
    "tiergate_operator_last_reconcile_timestamp_seconds",
    "Unix time of the last completed reconcile of any SenderTier",
)
NOTIFICATION_POSTS = Counter(
    "tiergate_operator_notification_posts_total",
    "Notification posts to receivers, by kind and result (sent or error)",
    ["kind", "result"],
)


LEADER = Gauge(
    "tiergate_operator_leader",
    "1 on the replica that holds the leader Lease and acts, 0 on a standby replica",
)
TIER_PHASE_SINCE = Gauge(
    "tiergate_operator_tier_phase_since_timestamp_seconds",
    "Unix time at which each SenderTier entered its current phase",
    ["namespace", "fleet", "tier"],
)
TIER_INFO = Gauge(
    "tiergate_operator_tier_info",
    "1 per SenderTier, its revisions as labels: spec, running, last signed off",
    ["namespace", "fleet", "tier", "revision", "current_revision", "signed_off_revision"],
)
TIER_LAST_RECONCILE = Gauge(
    "tiergate_operator_tier_last_reconcile_timestamp_seconds",
    "Unix time of the last completed reconcile of each SenderTier",
    ["namespace", "fleet", "tier"],
)
CHECK_VALUE = Gauge(
    "tiergate_operator_check_value",
    "Last observed value of each health check of each SenderTier, its bound as a label",
    ["namespace", "fleet", "tier", "check", "threshold"],
)
CHECK_FAILING = Gauge(
    "tiergate_operator_check_consecutive_failures",
    "Consecutive failed evaluations of each health check of each SenderTier",
    ["namespace", "fleet", "tier", "check"],
)

# Label sets last exported per tier, so a changed revision or bound replaces its old series.
_info_labels: dict[tuple[str, str, str], tuple[str, ...]] = {}
_check_labels: dict[tuple[str, str, str], set[tuple[str, ...]]] = {}


def record_status(
    namespace: str, fleet: str, tier: str, status: SenderTierStatus, phase_changed: bool, now: datetime
) -> None:
    """Export what a reconcile left in a tier's status: revisions, checks, phase age, freshness."""
    key = (namespace, fleet, tier)
    if phase_changed or key not in _info_labels:
        since = now if phase_changed else _phase_since(status, now)
        TIER_PHASE_SINCE.labels(*key).set(since.timestamp())
    info = (
        *key,
        status.revision or "",
        status.current_revision or "",
        status.signed_off_revision or "",
    )
    old = _info_labels.get(key)
    if old is not None and old != info:
        with contextlib.suppress(KeyError):
            TIER_INFO.remove(*old)
    TIER_INFO.labels(*info).set(1)
    _info_labels[key] = info
    checks: set[tuple[str, ...]] = set()
    for c in status.checks:
        labels = (*key, c.name, c.threshold or "")
        checks.add(labels)
        if c.value is not None:
            CHECK_VALUE.labels(*labels).set(c.value)
        CHECK_FAILING.labels(*key, c.name).set(c.consecutive_failures)
    for gone in _check_labels.get(key, set()) - checks:
        with contextlib.suppress(KeyError):
            CHECK_VALUE.remove(*gone)
    _check_labels[key] = checks
    TIER_LAST_RECONCILE.labels(*key).set(now.timestamp())


def _phase_since(status: SenderTierStatus, now: datetime) -> datetime:
    """After an operator restart: the newest condition transition stands in for the phase's start."""
    return max((c.last_transition_time for c in status.conditions), default=now)


def set_phase(namespace: str, fleet: str, tier: str, phase: Phase | None) -> None:
    """Set the one-hot phase gauge of a tier."""
    for p in Phase:
        TIER_PHASE.labels(namespace, fleet, tier, p.value).set(1 if p is phase else 0)


def forget(namespace: str, fleet: str, tier: str) -> None:
    """Drop a deleted tier's series."""
    key = (namespace, fleet, tier)
    for p in Phase:
        with contextlib.suppress(KeyError):
            TIER_PHASE.remove(*key, p.value)
    info = _info_labels.pop(key, None)
    checks = _check_labels.pop(key, set())
    removals: list[tuple[Gauge, tuple[str, ...]]] = [(TIER_PHASE_SINCE, key), (TIER_LAST_RECONCILE, key)]
    removals += [(TIER_INFO, info)] if info else []
    removals += [(CHECK_VALUE, labels) for labels in checks]
    removals += [(CHECK_FAILING, labels[:4]) for labels in checks]
    for gauge, labels in removals:
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)
