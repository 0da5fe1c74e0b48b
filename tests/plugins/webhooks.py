"""A webhook receiver on loopback for the sender's tests: checks every signature, records events.

It verifies with the recipe the README documents (HMAC-SHA256 of ``"<t>." + raw body``),
written here on its own rather than through `tiergate.domain.webhooks`, so a test proves the
recipe and the sender agree. It can answer 503 (``refuse``) or stop listening (``stop``) to
play a customer whose endpoint is down.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from tests.plugins.smsc import free_port
from tiergate.httpserver import HttpServer

SECRETS = {"cust": "whsec-cust-0123456789", "other": "whsec-other-0123456789"}


def webhooks_config(url_of: dict[str, str]) -> str:
    """The ``TIERGATE_WEBHOOKS`` value for `SECRETS`, with the given default URLs."""
    customers: dict[str, Any] = {}
    for customer, secret in SECRETS.items():
        customers[customer] = {"secrets": [secret]}
        if customer in url_of:
            customers[customer]["url"] = url_of[customer]
    return orjson.dumps({"customers": customers}).decode()


def signed(secret: str, header: str, body: bytes) -> bool:
    """The README's receiver recipe: a fresh ``t`` and a ``v1`` that is the HMAC of ``t.body``."""
    parts = [item.split("=", 1) for item in header.split(",") if "=" in item]
    stamp = next((v for k, v in parts if k == "t"), "0")
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= 300
    return fresh and any(k == "v1" and hmac.compare_digest(v, expected) for k, v in parts)


class WebhookReceiver:
    """Records what arrives per message, in arrival order; counts bad signatures."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.events: list[dict[str, Any]] = []
        self.by_message: dict[str, list[str]] = defaultdict(list)
        self.requests = 0
        self.bad_signatures = 0
        self.refused = 0
        self.refuse = False
        self._http: HttpServer | None = None

    def url(self, customer: str) -> str:
        """The callback URL that verifies with `customer`'s secret."""
        return f"http://127.0.0.1:{self.port}/hooks/{customer}"

    def kinds(self, message_id: str) -> list[str]:
        """Event types received for a message, duplicates removed, in first-arrival order."""
        return list(dict.fromkeys(self.by_message.get(message_id, [])))

    @property
    def unique_events(self) -> int:
        """Distinct event ids received."""
        return len({e["id"] for e in self.events})

    async def _hook(self, request: Request) -> Response:
        try:
            body = await request.body()
        except ClientDisconnect:  # the sender was killed mid-request
            return Response(status_code=400)
        self.requests += 1
        secret = SECRETS.get(request.path_params["customer"], "")
        if not signed(secret, request.headers.get("tiergate-signature", ""), body):
            self.bad_signatures += 1
            return Response(status_code=400)
        if self.refuse:
            self.refused += 1
            return Response(status_code=503)
        for event in orjson.loads(body)["events"]:
            assert event["customer_id"] == request.path_params["customer"]
            self.events.append(event)
            self.by_message[event["message_id"]].append(event["type"])
        return Response(status_code=204)

    async def start(self) -> None:
        """Listen on the port (again, after `stop`)."""
        app = Starlette(routes=[Route("/hooks/{customer}", self._hook, methods=["POST"])])
        self._http = HttpServer(app, "127.0.0.1", self.port)
        await self._http.start()

    async def stop(self) -> None:
        """Stop listening: connections are refused until `start`."""
        if self._http is not None:
            await self._http.stop()
            self._http = None


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    """A running receiver on a free loopback port."""
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()
