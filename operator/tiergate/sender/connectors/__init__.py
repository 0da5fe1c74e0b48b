"""Upstream connectors: one interface, an SMPP and an HTTP implementation.

`connector_from_url` loads on first use (PEP 562): the ingest API imports
`tiergate.sender.connectors.config` for its settings and never opens a connector, so it
does not load the SMPP and HTTP client libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tiergate.sender.connectors.base import Connector, Outbound, Receipt, ReceiptHandler

if TYPE_CHECKING:
    from tiergate.sender.connectors.factory import connector_from_url

__all__ = ["Connector", "Outbound", "Receipt", "ReceiptHandler", "connector_from_url"]


def __getattr__(name: str) -> Any:
    if name == "connector_from_url":
        from tiergate.sender.connectors.factory import connector_from_url

        return connector_from_url
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
