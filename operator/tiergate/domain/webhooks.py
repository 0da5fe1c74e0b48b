"""Delivery-status webhooks, the pure part: event names, payloads, signatures, retry schedule.

Every state change a customer cares about becomes one event, kept in the store's outbox in
the transaction that made the change, and POSTed to the message's callback URL as
``{"events": [...]}`` (a request carries events of several messages, never two of one
message, so each message's events arrive in order). A request is signed with the customer's
secret::

    Tiergate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

(one ``v1=`` per secret while a secret is being rotated). A receiver recomputes the HMAC over
the raw body it got, compares it in constant time with any ``v1`` and refuses a ``t`` more than
`SIGNATURE_TOLERANCE` seconds away from its clock. Anything but a 2xx answer, or no answer,
is retried on `RetrySchedule`; an event is delivered at least once, so receivers deduplicate
by event id.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

SIGNATURE_HEADER = "Tiergate-Signature"
SIGNATURE_TOLERANCE = 300.0


class EventType(StrEnum):
    """What happened to a message, as the customer reads it."""

    ACCEPTED = "accepted"  # the carrier took the submit
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"  # the carrier's receipt says it failed
    EXPIRED = "expired"  # its validity ended while queued
    DISCARDED = "discarded"  # tiergate gave up on it (reason says why)
    REPLAYED = "replayed"  # a replay put it back in the queue
    UNKNOWN = "unknown"  # no receipt came in time


# The discard reason that a customer sees as its own event type.
REASON_EXPIRED = "expired"
REASON_RECEIPT_TIMEOUT = "receipt-timeout"


_BY_STATE = {
    "submitted": EventType.ACCEPTED,
    "delivered": EventType.DELIVERED,
    "failed": EventType.UNDELIVERABLE,
    "unknown": EventType.UNKNOWN,
    "queued": EventType.REPLAYED,
}


def event_type(state: str, reason: str | None) -> EventType:
    """The event a stored transition is: the message's new state, and a discard's reason."""
    if state == "discarded":
        return EventType.EXPIRED if reason == REASON_EXPIRED else EventType.DISCARDED
    return _BY_STATE[state]


class DeliveryState(StrEnum):
    """Where one outbox event is."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # retried for the whole retry window without a 2xx


@dataclass(frozen=True, slots=True)
class Event:
    """One event as it is posted."""

    id: str
    type: EventType
    message_id: str
    customer_id: str
    occurred_at: str
    state: str
    reason: str | None = None
    client_ref: str | None = None
    upstream_message_id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """The JSON shape of the event."""
        return {
            "id": self.id,
            "type": self.type.value,
            "message_id": self.message_id,
            "customer_id": self.customer_id,
            "occurred_at": self.occurred_at,
            "state": self.state,
            "reason": self.reason,
            "client_ref": self.client_ref,
            "upstream_message_id": self.upstream_message_id,
        }


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>." + body`` under `secret`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def signature_header(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """The `SIGNATURE_HEADER` value: the time and one ``v1`` per secret."""
    return ",".join([f"t={timestamp}", *(f"v1={signature(s, timestamp, body)}" for s in secrets)])


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = SIGNATURE_TOLERANCE) -> bool:
    """Whether `header` signs `body` with `secret` at a time within `tolerance` of `now`."""
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)


@dataclass(frozen=True)
class RetrySchedule:
    """When to try an event again: doubling delays with jitter, for a bounded time."""

    base_delay: float = 1.0
    max_delay: float = 600.0
    retry_for: float = 24 * 3600.0

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds before the next try after `attempts` failed tries (80-100 % of the step)."""
        step = min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))
        return float(step * (0.8 + 0.2 * rng.random()))

    def next_attempt(self, attempts: int, first_at: float, now: float, rng: random.Random) -> float | None:
        """Epoch seconds of the next try, or None when the retry window (from `first_at`) is over."""
        when = now + self.delay(attempts, rng)
        if when - first_at > self.retry_for:
            return None
        return when
