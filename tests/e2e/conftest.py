"""The e2e suite's fixture: the fleet's ConfigMap and Secret pointing at the chart's services."""

from __future__ import annotations

import pytest
from kubernetes import client
from tests.e2e.helpers import SMSC_URL, STORE_URL
from tests.plugins.operator import create_fleet_env


@pytest.fixture
def fleet_env(namespace: str, kube_api: client.ApiClient) -> dict[str, str]:
    """The ConfigMap and Secret the fleet's workers read: the chart's store and SMSC."""
    return create_fleet_env(kube_api, namespace, STORE_URL, SMSC_URL)
