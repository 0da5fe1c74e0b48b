"""Upstream connectors: one interface, an SMPP and an HTTP implementation."""

from tiergate.sender.connectors.base import Connector, Outbound, Receipt, ReceiptHandler
from tiergate.sender.connectors.factory import connector_from_url

__all__ = ["Connector", "Outbound", "Receipt", "ReceiptHandler", "connector_from_url"]
