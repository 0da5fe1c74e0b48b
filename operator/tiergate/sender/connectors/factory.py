"""Build a connector from an upstream URL (``smpp://host:port`` or ``http(s)://...``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from tiergate.sender.connectors.base import Connector
from tiergate.sender.connectors.http import HttpConnector
from tiergate.sender.connectors.smpp import SmppConnector
from tiergate.sender.errors import ConfigError


def connector_from_url(
    url: str,
    *,
    system_id: str = "",
    password: str = "",
    window: int = 64,
    rate: float | None = None,
    submit_timeout: float = 10.0,
) -> Connector:
    """A connector for `url`; SMPP credentials come from the arguments, never the URL."""
    parts = urlsplit(url)
    if parts.scheme == "smpp":
        if not parts.hostname or not parts.port:
            raise ConfigError(f"Upstream URL needs host and port: {parts.scheme}://...")
        return SmppConnector(
            parts.hostname,
            parts.port,
            system_id or "tiergate",
            password,
            window=window,
            rate=rate,
            submit_timeout=submit_timeout,
        )
    if parts.scheme in {"http", "https"}:
        return HttpConnector(url, token=password, window=window, rate=rate, timeout=submit_timeout)
    raise ConfigError(f"Unsupported upstream scheme {parts.scheme!r}: use smpp:// or http(s)://")
