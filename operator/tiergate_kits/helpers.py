"""Helpers the tests, the benchmarks and the drill share, written once.

Loopback ports, a pod template with extra environment, the health checks a short rollout
gates on, the ConfigMap and Secret a fleet's workers read, and polling until something holds
(each caller turns a timeout into its own failure: a test fails, the drill raises `StackError`).
"""

from __future__ import annotations

import copy
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client

from tiergate.domain.checks import SUBMITS


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_env(template: Mapping[str, Any], **env: str) -> dict[str, Any]:
    """A copy of a pod template with extra environment on the worker container."""
    out = copy.deepcopy(dict(template))
    container = out["spec"]["containers"][0]
    container["env"] = [e for e in container.get("env", []) if e["name"] not in env]
    container["env"] += [{"name": k, "value": v} for k, v in env.items()]
    return out


def create_fleet_env(
    kube_api: client.ApiClient, namespace: str, store_url: str, upstream_url: str
) -> dict[str, str]:
    """Create the ConfigMap ``tiergate-sender`` and Secret ``tiergate-smpp`` the fleet's workers read."""
    core = client.CoreV1Api(kube_api)
    data = {"TIERGATE_STORE_URL": store_url, "TIERGATE_UPSTREAM_URL": upstream_url}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "tiergate-sender"}, "data": data})
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "tiergate-smpp"},
            "stringData": {"system-id": "tiergate", "password": "secret12"},
        },
    )
    return data


def quick_checks(
    window: str = "15s", min_evidence: int = 5, min_ratio: float | None = None
) -> list[dict[str, Any]]:
    """A deep readiness probe and the Prometheus error ratio of the tier's revision over ``window``."""
    selector = 'tier="{tier}",revision="{revision}"'
    http: dict[str, Any] = {"port": 8080, "path": "/readyz"}
    if min_ratio is not None:
        http["minRatio"] = min_ratio
    return [
        {"name": "deep-ready", "http": http},
        {
            "name": "error-rate",
            "prometheus": {
                "query": f'(sum(rate({SUBMITS}{{{selector},result="error"}}[{window}])) or vector(0)) / '
                f"sum(rate({SUBMITS}{{{selector}}}[{window}]))",
                "max": 0.05,
                "minEvidence": {
                    "query": f"sum(increase({SUBMITS}{{{selector}}}[{window}]))",
                    "min": min_evidence,
                },
            },
        },
    ]


def poll(
    check: Callable[[], Any],
    timeout: float,
    interval: float,
    tolerate: tuple[type[BaseException], ...] = (),
) -> tuple[bool, Any]:
    """Call ``check`` until it returns something truthy: (True, that value), or (False, the last
    value or tolerated error) once ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except tolerate as exc:
            last = exc
        if last and not isinstance(last, BaseException):
            return True, last
        time.sleep(interval)
    return False, last
