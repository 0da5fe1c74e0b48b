"""The e2e suite's fixtures: a cluster given by KUBECONFIG, a fleet's settings for the chart's services.

The suite runs only when asked for (TIERGATE_E2E=1, see tests/plugins/tools.py); asked for
without a KUBECONFIG, it follows the missing-tool rule rather than starting the local control plane.
"""

from __future__ import annotations

import os

import pytest
from kubernetes import client
from tests.e2e.helpers import SMSC_URL, STORE_URL
from tests.plugins.tools import missing_tool

from tiergate_kits.helpers import create_fleet_env


@pytest.fixture(scope="session", autouse=True)
def _cluster_given() -> None:
    if not os.environ.get("KUBECONFIG"):
        missing_tool("a cluster given by KUBECONFIG", "scripts/kind/e2e.sh")


@pytest.fixture
def fleet_env(namespace: str, kube_api: client.ApiClient) -> dict[str, str]:
    """The ConfigMap and Secret the fleet's workers read: the chart's store and SMSC."""
    return create_fleet_env(kube_api, namespace, STORE_URL, SMSC_URL)
