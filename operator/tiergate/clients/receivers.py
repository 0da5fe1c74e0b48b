"""The operator's door to notification receivers: one HTTP POST per notification and receiver.

The request itself (body, signature, idempotency header) is built in
`tiergate.domain.notifications`; this module only sends it and says whether it was taken.
"""

from __future__ import annotations

import httpx

from tiergate.domain.notifications import Post

TIMEOUT = 10.0


class ReceiverClient:
    """Posts notifications over one connection pool."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def post(self, post: Post) -> str | None:
        """Send `post`; None when the receiver answered 2xx, else what went wrong."""
        try:
            answer = await self._http.post(post.url, headers=dict(post.headers), content=post.body)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if answer.is_success:
            return None
        return f"HTTP {answer.status_code}"

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
