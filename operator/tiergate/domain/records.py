"""The message record validation produces and the store takes as it is; pure and light.

Kept apart from `tiergate.domain.messages` (which loads phonenumbers) so the store and the
processes that only read messages do not import the validation rules.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Encoding(StrEnum):
    """Body encoding on the air interface."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"


class ValidMessage(NamedTuple):
    """A message that passed validation, normalised.

    A tuple, because thousands are made per batch; `tiergate.store.NewMessage` is this
    same type, so the API hands validated messages to the store without copying them.
    """

    customer_id: str
    traffic_class: str
    destination: str
    sender_id: str
    body: str
    encoding: Encoding
    segments: int
    client_ref: str | None = None
    idempotency_key: str | None = None
    callback_url: str | None = None
    # Epoch seconds: when the message stops being worth sending, and when it may first go.
    expires_at: float | None = None
    send_at: float | None = None
