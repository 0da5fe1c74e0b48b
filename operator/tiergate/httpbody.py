"""Request bodies read within a size limit, and JSON recognised by its media type.

Shared by the ingest and replay APIs. The limit is enforced while the body streams in,
for a declared Content-Length and a chunked body alike, so a client cannot make a
process hold more than the limit (plus one chunk) before it is refused. The media type is
parsed, not searched: ``text/plain; x=application/json`` is not JSON.
"""

from __future__ import annotations

from starlette.requests import Request

JSON_MEDIA_TYPE = "application/json"


class BodyTooLarge(Exception):
    """The request body is over the limit; nothing more of it is read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body over {limit} bytes")
        self.limit = limit


def media_type(content_type: str) -> str:
    """The media type of a Content-Type value, lower-cased, without parameters."""
    return content_type.partition(";")[0].strip().lower()


def is_json(request: Request) -> bool:
    """Whether the request declares ``application/json`` (parameters such as charset allowed)."""
    return media_type(request.headers.get("content-type", "")) == JSON_MEDIA_TYPE


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read chunk by chunk; `BodyTooLarge` once it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
