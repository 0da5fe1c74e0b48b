"""The interface every upstream connector keeps, so the worker loop is transport-blind.

A connector submits one message and answers with the upstream's id, or raises one of
`tiergate.sender.errors` (`TransientError`, `ThrottledError`, `PermanentError`). Delivery
receipts come back through a handler the worker registers; the worker calls a receipt's
`ack` once it is stored, so a connector that can withhold its answer to the upstream until
then (SMPP's ``deliver_sm_resp``) loses no receipt in a crash.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from tiergate.sender.errors import UnavailableError
from tiergate.sender.ratelimit import TokenBucket


@dataclass(frozen=True)
class Outbound:
    """One message as a connector sends it."""

    message_id: str
    source: str
    destination: str
    body: str
    # When the message stops being worth delivering (SMPP validity_period), if it has a limit.
    validity: datetime | None = None


def _nothing_to_ack() -> None:
    return None


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt: the upstream id, a final state (delivered or failed) and detail.

    `ack` answers the upstream; call it only after the receipt is stored.
    """

    upstream_id: str
    delivered: bool
    status: str
    error: str = ""
    ack: Callable[[], None] = field(default=_nothing_to_ack, compare=False, repr=False)


ReceiptHandler = Callable[[Receipt], None]


class Connector(abc.ABC):
    """An upstream SMSC or HTTP provider."""

    kind: str = "abstract"

    def __init__(self, *, window: int = 64, rate: float | None = None) -> None:
        self.window = window
        self._slots = asyncio.Semaphore(window)
        self._bucket = TokenBucket(rate) if rate else None
        self._receipt_handler: ReceiptHandler | None = None

    def on_receipt(self, handler: ReceiptHandler) -> None:
        """Register the function called (on the loop) for each delivery receipt."""
        self._receipt_handler = handler

    def take_rate(self) -> float | None:
        """Hand this connector's rate limit to the caller (which then enforces it); its rate."""
        bucket, self._bucket = self._bucket, None
        return bucket.rate if bucket is not None else None

    @abc.abstractmethod
    def describe(self) -> str:
        """The upstream's URL, without credentials."""

    @property
    @abc.abstractmethod
    def bound(self) -> bool:
        """Whether a submit could be sent right now."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""

    @abc.abstractmethod
    async def _submit(self, message: Outbound) -> str:
        """Send one message; the window and rate limit are already held."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop the connection after answers in flight have come back."""

    async def submit(self, message: Outbound) -> str:
        """Submit one message within the window and rate limit; return the upstream id."""
        if not self.bound:
            raise UnavailableError(f"{self.kind} upstream not bound", code="not-bound")
        async with self._slots:
            if self._bucket is not None:
                await self._bucket.acquire()
            return await self._submit(message)

    def _deliver_receipt(self, receipt: Receipt) -> None:
        if self._receipt_handler is not None:
            self._receipt_handler(receipt)
