"""The HTTP connector against a real HTTP server answering like a provider would."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.plugins.smsc import free_port

from tiergate.httpserver import HttpServer
from tiergate.sender.connectors.base import Outbound
from tiergate.sender.connectors.http import HttpConnector
from tiergate.sender.errors import PermanentError, ThrottledError, TransientError

seen: list[dict[str, object]] = []


async def provider(request: Request) -> Response:
    body = await request.json()
    seen.append({"auth": request.headers.get("authorization"), **body})
    to = body["to"]
    if to.endswith("429"):
        return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "7"})
    if to.endswith("400"):
        return JSONResponse({"error": "bad number"}, status_code=400)
    if to.endswith("503"):
        return JSONResponse({"error": "down"}, status_code=503)
    return JSONResponse({"message_id": f"P-{body['id']}"}, status_code=202)


@pytest.fixture
async def provider_url() -> AsyncIterator[str]:
    port = free_port()
    server = HttpServer(Starlette(routes=[Route("/send", provider, methods=["POST"])]), "127.0.0.1", port)
    await server.start()
    try:
        yield f"http://127.0.0.1:{port}/send"
    finally:
        await server.stop()


def out(to: str) -> Outbound:
    return Outbound("m1", "Acme", to, "hello")


async def test_http_connector_maps_answers(provider_url: str) -> None:
    connector = HttpConnector(provider_url, token="s3cret", rate=1000)
    await connector.start()
    try:
        assert connector.bound
        assert await connector.submit(out("+4915112345678")) == "P-m1"
        assert seen[-1]["auth"] == "Bearer s3cret"
        assert seen[-1]["text"] == "hello"
        with pytest.raises(ThrottledError) as throttled:
            await connector.submit(out("+4915112345429"))
        assert throttled.value.retry_after == 7.0
        with pytest.raises(PermanentError):
            await connector.submit(out("+4915112345400"))
        with pytest.raises(TransientError) as failed:
            await connector.submit(out("+4915112345503"))
        assert not isinstance(failed.value, ThrottledError)
    finally:
        await connector.close()


async def test_http_connector_unreachable_is_transient() -> None:
    connector = HttpConnector(f"http://127.0.0.1:{free_port()}/send", timeout=2.0)
    await connector.start()
    try:
        with pytest.raises(TransientError):
            await connector.submit(out("+4915112345678"))
    finally:
        await connector.close()
