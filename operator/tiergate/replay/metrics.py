"""The replay service's Prometheus metrics; ``deploy/prometheus/tiergate-alerts.yaml`` reads them.

Discard gauges come from the store (refreshed periodically), so they say what is in the
discard log whichever process wrote it. Job gauges carry the job id as ``replay_job``, never
``job``: Prometheus keeps ``job`` for the scrape target.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DISCARDS = Gauge(
    "tiergate_replay_discards",
    "Discard events in the store, by reason, tier and whether a replay job claimed them",
    ["reason", "tier", "replayed"],
)
OLDEST_UNREPLAYED_AGE = Gauge(
    "tiergate_replay_oldest_unreplayed_discard_age_seconds",
    "Age of the oldest discard no replay job has claimed, by reason (0 when none)",
    ["reason"],
)
JOB_MESSAGES = Gauge(
    "tiergate_replay_job_messages",
    "A replay job's progress: matched, replayed, skipped (all reasons), too_old, failed",
    ["replay_job", "outcome"],
)
JOB_STATE = Gauge(
    "tiergate_replay_job_state",
    "1 for a replay job's current state, 0 for the others",
    ["replay_job", "state"],
)
JOBS = Gauge(
    "tiergate_replay_jobs",
    "Replay jobs by state (the most recent ones the service lists)",
    ["state"],
)
REPLAYED = Counter(
    "tiergate_replay_messages_replayed",
    "Discarded messages this process re-queued for replay",
)
SKIPPED = Counter(
    "tiergate_replay_messages_skipped",
    "Discards this process did not re-queue, by reason",
    ["reason"],
)
STORE_UP = Gauge(
    "tiergate_replay_store_up",
    "1 when the last metrics refresh read the store, 0 when it failed",
)
REFRESHED = Gauge(
    "tiergate_replay_metrics_refreshed_timestamp_seconds",
    "When the discard and job gauges were last refreshed from the store",
)
