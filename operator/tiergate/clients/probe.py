"""Deep HTTP probes of a tier's pods: the check that a worker can really send, not just that it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx


async def probe_all(
    ips: Sequence[str], port: int, path: str, scheme: str, request_timeout: float
) -> list[tuple[str, bool, str]]:
    """GET ``scheme://ip:port/path`` on every pod IP; return (ip, passed, detail) for each."""
    async with httpx.AsyncClient(timeout=request_timeout, verify=False) as http:

        async def one(ip: str) -> tuple[str, bool, str]:
            url = f"{scheme.lower()}://{ip}:{port}{path}"
            try:
                response = await http.get(url)
            except httpx.HTTPError as exc:
                return ip, False, f"{type(exc).__name__}"
            return ip, 200 <= response.status_code < 300, str(response.status_code)

        return list(await asyncio.gather(*(one(ip) for ip in ips)))
