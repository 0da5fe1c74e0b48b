"""Helpers shared by the store tests."""

from __future__ import annotations

import time

from tiergate.store import Encoding, NewMessage


class FakeClock:
    """A settable clock so lease and retry times need no sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def msg(
    customer: str = "acme",
    traffic_class: str = "otp",
    key: str | None = None,
    destination: str = "+447700900123",
    body: str = "Your code is 123456",
) -> NewMessage:
    return NewMessage(
        customer_id=customer,
        traffic_class=traffic_class,
        destination=destination,
        sender_id="ACME",
        body=body,
        encoding=Encoding.GSM7,
        segments=1,
        client_ref="ref-1",
        idempotency_key=key,
    )
