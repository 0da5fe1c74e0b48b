"""The operator's per-tier gauges follow the status each reconcile writes, and vanish with the tier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from tiergate.api.v1alpha1 import SenderTierStatus
from tiergate.controller import metrics

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
KEY = ("ns-metrics", "fleet-a", "bulk")


def sample(name: str, **labels: str) -> float | None:
    """The current value of one series in the default registry."""
    return REGISTRY.get_sample_value(name, {"namespace": KEY[0], "fleet": KEY[1], "tier": KEY[2], **labels})


def status(**fields: object) -> SenderTierStatus:
    """A status as the operator writes it (camelCase keys)."""
    return SenderTierStatus.model_validate(fields)


def test_revisions_are_one_info_series_that_moves_with_the_spec() -> None:
    metrics.record_status(*KEY, status(revision="r1", currentRevision="r1", signedOffRevision="r1"), True, T0)
    metrics.record_status(*KEY, status(revision="r2", currentRevision="r1", signedOffRevision="r1"), True, T0)
    info = "tiergate_operator_tier_info"
    assert sample(info, revision="r2", current_revision="r1", signed_off_revision="r1") == 1
    assert sample(info, revision="r1", current_revision="r1", signed_off_revision="r1") is None
    metrics.forget(*KEY)


def test_phase_age_resets_only_when_the_phase_changes() -> None:
    since = "tiergate_operator_tier_phase_since_timestamp_seconds"
    metrics.record_status(*KEY, status(phase="Progressing"), True, T0)
    metrics.record_status(*KEY, status(phase="Progressing"), False, T0 + timedelta(seconds=30))
    assert sample(since) == T0.timestamp()
    metrics.record_status(*KEY, status(phase="Baking"), True, T0 + timedelta(seconds=60))
    assert sample(since) == (T0 + timedelta(seconds=60)).timestamp()
    assert (
        sample("tiergate_operator_tier_last_reconcile_timestamp_seconds")
        == (T0 + timedelta(seconds=60)).timestamp()
    )
    metrics.forget(*KEY)


def test_after_a_restart_the_newest_condition_dates_the_phase() -> None:
    moved = T0 - timedelta(minutes=7)
    cond = {
        "type": "Ready",
        "status": "False",
        "reason": "Progressing",
        "lastTransitionTime": moved.isoformat(),
    }
    metrics.record_status(*KEY, status(phase="Progressing", conditions=[cond]), False, T0)
    assert sample("tiergate_operator_tier_phase_since_timestamp_seconds") == moved.timestamp()
    metrics.forget(*KEY)


def test_check_values_carry_their_bound_and_a_removed_check_disappears() -> None:
    checks = [
        {"name": "error-ratio", "value": 0.2, "threshold": "<= 0.05", "consecutiveFailures": 2},
        {"name": "readyz", "value": 1.0, "threshold": ">= 1"},
    ]
    metrics.record_status(*KEY, status(checks=checks), False, T0)
    assert sample("tiergate_operator_check_value", check="error-ratio", threshold="<= 0.05") == 0.2
    assert sample("tiergate_operator_check_consecutive_failures", check="error-ratio") == 2
    metrics.record_status(*KEY, status(checks=checks[1:]), False, T0)
    assert sample("tiergate_operator_check_value", check="error-ratio", threshold="<= 0.05") is None
    assert sample("tiergate_operator_check_value", check="readyz", threshold=">= 1") == 1.0


def test_forget_drops_every_series_of_the_tier() -> None:
    checks = [{"name": "readyz", "value": 1.0, "threshold": ">= 1"}]
    metrics.record_status(*KEY, status(revision="r9", checks=checks, phase="SignedOff"), True, T0)
    metrics.forget(*KEY)
    assert (
        sample("tiergate_operator_tier_info", revision="r9", current_revision="", signed_off_revision="")
        is None
    )
    assert sample("tiergate_operator_check_value", check="readyz", threshold=">= 1") is None
    assert sample("tiergate_operator_check_consecutive_failures", check="readyz") is None
    assert sample("tiergate_operator_tier_phase_since_timestamp_seconds") is None
