"""Webhook signatures, the retry schedule and the event a stored transition is; pure."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from tiergate.domain.webhooks import (
    EventType,
    RetrySchedule,
    event_type,
    signature_header,
    verify,
)

SECRET = "whsec-0123456789abcdef"
BODY = b'{"events":[{"id":"ev_1"}]}'


def test_the_documented_recipe_verifies_the_header() -> None:
    header = signature_header([SECRET], 1_700_000_000, BODY)
    fields = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert fields == {"t": "1700000000", "v1": expected}


@pytest.mark.parametrize(
    ("secret", "body", "now", "ok"),
    [
        (SECRET, BODY, 1_700_000_000, True),
        (SECRET, BODY, 1_700_000_299, True),
        (SECRET, BODY, 1_700_000_301, False),
        (SECRET, BODY, 1_699_999_699, False),
        ("another-secret-entirely", BODY, 1_700_000_000, False),
        (SECRET, BODY + b" ", 1_700_000_000, False),
    ],
)
def test_verify(secret: str, body: bytes, now: float, ok: bool) -> None:
    header = signature_header([SECRET], 1_700_000_000, BODY)
    assert verify(secret, header, body, now) is ok


def test_either_secret_verifies_while_rotating() -> None:
    header = signature_header([SECRET, "the-next-secret-0001"], 1_700_000_000, BODY)
    assert verify(SECRET, header, BODY, 1_700_000_000)
    assert verify("the-next-secret-0001", header, BODY, 1_700_000_000)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=x,v1=abc", "t=1700000000"])
def test_malformed_headers_never_verify(header: str) -> None:
    assert not verify(SECRET, header, BODY, 1_700_000_000)


def test_retry_delays_double_up_to_the_cap_with_bounded_jitter() -> None:
    schedule = RetrySchedule(base_delay=1.0, max_delay=60.0, retry_for=3600.0)
    rng = random.Random(7)
    for attempts, step in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)]:
        delay = schedule.delay(attempts, rng)
        assert 0.8 * step <= delay <= step


def test_retrying_ends_when_the_window_is_over() -> None:
    schedule = RetrySchedule(base_delay=1.0, max_delay=60.0, retry_for=100.0)
    rng = random.Random(1)
    assert schedule.next_attempt(1, first_at=0.0, now=10.0, rng=rng) is not None
    assert schedule.next_attempt(7, first_at=0.0, now=95.0, rng=rng) is None


@pytest.mark.parametrize(
    ("state", "reason", "event"),
    [
        ("submitted", None, EventType.ACCEPTED),
        ("delivered", None, EventType.DELIVERED),
        ("failed", "stat=UNDELIV", EventType.UNDELIVERABLE),
        ("unknown", "receipt-timeout", EventType.UNKNOWN),
        ("queued", "replay", EventType.REPLAYED),
        ("discarded", "expired", EventType.EXPIRED),
        ("discarded", "max-attempts", EventType.DISCARDED),
    ],
)
def test_event_type(state: str, reason: str | None, event: EventType) -> None:
    assert event_type(state, reason) is event
