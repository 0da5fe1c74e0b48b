"""The operator's own Prometheus metrics: what on-call and the alert rules read about rollouts."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

from tiergate.api.v1alpha1 import Phase

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


def set_phase(namespace: str, fleet: str, tier: str, phase: Phase | None) -> None:
    """Set the one-hot phase gauge of a tier."""
    for p in Phase:
        TIER_PHASE.labels(namespace, fleet, tier, p.value).set(1 if p is phase else 0)


def forget(namespace: str, fleet: str, tier: str) -> None:
    """Drop a deleted tier's phase series."""
    for p in Phase:
        with contextlib.suppress(KeyError):
            TIER_PHASE.remove(namespace, fleet, tier, p.value)
