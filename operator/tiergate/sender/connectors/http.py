"""A generic HTTP SMS provider connector on httpx.

The contract is small: ``POST <url>`` with JSON ``{"id", "from", "to", "text"}`` and an
optional bearer token; a 2xx answer carries the provider's id as ``id`` or ``message_id``.
429 (with Retry-After) is throttling, other 4xx are permanent, 5xx and timeouts transient.
"""

from __future__ import annotations

import httpx

from tiergate.sender.connectors.base import Connector, Outbound
from tiergate.sender.errors import PermanentError, ThrottledError, TransientError


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class HttpConnector(Connector):
    """Submits each message with one HTTP request."""

    kind = "http"

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        window: int = 64,
        rate: float | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(window=window, rate=rate)
        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            timeout=timeout,
            headers=headers,
            limits=httpx.Limits(max_connections=window, max_keepalive_connections=window),
        )
        self._started = False

    def describe(self) -> str:
        """The provider's URL."""
        return self.url

    @property
    def bound(self) -> bool:
        """An HTTP provider is usable once started; failures show per request."""
        return self._started and not self._client.is_closed

    async def start(self) -> None:
        """Mark the connector usable."""
        self._started = True

    async def _submit(self, message: Outbound) -> str:
        payload = {
            "id": message.message_id,
            "from": message.source,
            "to": message.destination,
            "text": message.body,
        }
        try:
            response = await self._client.post(self.url, json=payload)
        except httpx.TimeoutException:
            raise TransientError("HTTP provider timed out", code="timeout") from None
        except httpx.HTTPError as exc:
            raise TransientError(
                f"HTTP provider unreachable: {type(exc).__name__}", code="transport"
            ) from None
        status = response.status_code
        code = f"HTTP {status}"
        if status == 429:
            raise ThrottledError(
                "HTTP provider throttled",
                code=code,
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        if 400 <= status < 500:
            raise PermanentError(f"HTTP provider rejected the message: {code}", code=code)
        if status >= 300:
            raise TransientError(f"HTTP provider failed: {code}", code=code)
        try:
            body = response.json()
        except ValueError:
            body = {}
        upstream_id = ""
        if isinstance(body, dict):
            upstream_id = str(body.get("id") or body.get("message_id") or "")
        return upstream_id or message.message_id

    async def close(self) -> None:
        """Close the HTTP client."""
        self._started = False
        await self._client.aclose()
