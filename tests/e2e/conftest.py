"""The e2e suite's fixture: the fleet's ConfigMap and Secret pointing at the chart's services."""

from __future__ import annotations

import pytest
from kubernetes import client
from tests.e2e.helpers import SMSC_URL, STORE_URL


@pytest.fixture
def fleet_env(namespace: str, kube_api: client.ApiClient) -> dict[str, str]:
    """The ConfigMap and Secret the fleet's workers read: the chart's store and SMSC."""
    core = client.CoreV1Api(kube_api)
    data = {"TIERGATE_STORE_URL": STORE_URL, "TIERGATE_UPSTREAM_URL": SMSC_URL}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "tiergate-sender"}, "data": data})
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "tiergate-smpp"},
            "stringData": {"system-id": "tiergate", "password": "secret12"},
        },
    )
    return data
