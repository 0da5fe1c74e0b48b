"""Reads a SenderTier's ``status.halt`` for ``tiergate replay start --from-halt``.

The replay CLI sits beside the controller and may not import the Kubernetes client itself;
this one read is all it needs from the API server.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tiergate.api.v1alpha1 import GROUP, PLURAL, VERSION
from tiergate.clients.kube import load_config
from tiergate.errors import TiergateError


class TierNotFound(TiergateError, LookupError):
    """No SenderTier of that name in that namespace."""


async def read_halt(namespace: str, name: str, kubeconfig: str | None = None) -> dict[str, Any] | None:
    """The SenderTier's ``status.halt``, or None when the tier is not halted."""
    api = client.CustomObjectsApi(load_config(kubeconfig))
    try:
        obj = await asyncio.to_thread(
            api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            raise TierNotFound(f"SenderTier {namespace}/{name} not found") from exc
        raise
    halt = (obj.get("status") or {}).get("halt")
    return dict(halt) if isinstance(halt, dict) else None
