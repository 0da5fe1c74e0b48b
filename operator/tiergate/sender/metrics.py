"""The sender's Prometheus metrics; the rollout gates query these exact names.

Tier and revision are labels wherever a bad release would show, so a gate can compare the
new revision against the old one within a tier.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from tiergate.domain.series import DISCARDS_COUNTER, SUBMITS_COUNTER

ACCEPTED = Counter(
    "tiergate_sender_accepted",
    "Messages accepted by the ingest API (answered 202 after the durable write)",
    ["traffic_class"],
)
REJECTED = Counter(
    "tiergate_sender_rejected",
    "Requests refused by the ingest API, by HTTP status",
    ["status"],
)
SUBMITS = Counter(
    SUBMITS_COUNTER,
    "Submits to the upstream, by result (ok, error, throttled)",
    ["tier", "revision", "traffic_class", "result"],
)
DISCARDS = Counter(
    DISCARDS_COUNTER,
    "Messages given up on, by reason",
    ["tier", "revision", "traffic_class", "reason"],
)
RETRIES = Counter(
    "tiergate_sender_retries",
    "Submits scheduled for another attempt",
    ["tier", "revision"],
)
RECEIPTS = Counter(
    "tiergate_sender_receipts",
    "Delivery receipts received, by final state",
    ["tier", "revision", "state"],
)
# Several API processes each sample the queue: the newest sample is the answer.
QUEUE_DEPTH = Gauge(
    "tiergate_sender_queue_depth",
    "Messages queued and not yet submitted",
    ["traffic_class"],
    multiprocess_mode="mostrecent",
)
OLDEST_QUEUED_AGE = Gauge(
    "tiergate_sender_oldest_queued_age_seconds",
    "Age of the oldest message queued and not yet submitted",
    ["traffic_class"],
    multiprocess_mode="mostrecent",
)
IN_FLIGHT = Gauge(
    "tiergate_sender_in_flight",
    "Submits sent upstream and not yet answered",
    ["tier", "revision"],
)
SUBMIT_LATENCY = Histogram(
    "tiergate_sender_submit_latency_seconds",
    "Time from sending a submit to the upstream's answer",
    ["tier", "revision"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECEIPT_LATENCY = Histogram(
    "tiergate_sender_receipt_latency_seconds",
    "Time from a message's acceptance to its delivery receipt",
    ["tier", "revision"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
WORKER_READY = Gauge(
    "tiergate_sender_worker_ready",
    "1 when the worker can really send (store reachable, upstream bound, loop running)",
    ["tier", "revision"],
)
UPSTREAM_BOUND = Gauge(
    "tiergate_sender_upstream_bound",
    "1 when every served destination prefix has a bound upstream connector",
    ["tier", "revision"],
)
CONNECTOR_BINDS_BOUND = Gauge(
    "tiergate_sender_connector_binds_bound",
    "Binds (SMPP sessions, HTTP clients) of an upstream connector bound now",
    ["tier", "revision", "connector"],
)
CONNECTOR_RATE = Gauge(
    "tiergate_sender_connector_rate",
    "Submits/s a connector may send now (its tps, lowered while throttled); 0 when it has no cap",
    ["tier", "revision", "connector"],
)
CONNECTOR_CIRCUIT_OPEN = Gauge(
    "tiergate_sender_connector_circuit_open",
    "1 while a connector's circuit breaker keeps traffic off it (open or probing)",
    ["tier", "revision", "connector"],
)
CONNECTOR_SUBMITS = Counter(
    "tiergate_sender_connector_submits",
    "Submits per upstream connector, by result (ok, error, throttled, rejected)",
    ["tier", "revision", "connector", "result"],
)
WEBHOOK_EVENTS = Counter(
    "tiergate_sender_webhook_events",
    "Webhook events settled, by result (sent: a 2xx came; failed: retried for the whole window)",
    ["result"],
)
WEBHOOK_POSTS = Counter(
    "tiergate_sender_webhook_posts",
    "Webhook requests made, by result (ok, error: no 2xx or no answer)",
    ["result"],
)
WEBHOOK_PENDING = Gauge(
    "tiergate_sender_webhook_pending",
    "Webhook events in the outbox not yet sent",
    multiprocess_mode="mostrecent",
)
WEBHOOK_OLDEST_PENDING_AGE = Gauge(
    "tiergate_sender_webhook_oldest_pending_age_seconds",
    "Age of the oldest webhook event not yet sent",
    multiprocess_mode="mostrecent",
)
RECEIPT_TIMEOUTS = Counter(
    "tiergate_sender_receipt_timeouts",
    "Submitted messages moved to unknown because no receipt came within the receipt timeout",
)
EXPIRED = Counter(
    "tiergate_sender_expired",
    "Queued messages discarded because their validity ended",
)
