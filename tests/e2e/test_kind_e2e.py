"""The tiergate chart on a real cluster (kind): real worker containers, the in-cluster operator.

Opt-in: runs only with KUBECONFIG set and TIERGATE_E2E=1 (scripts/kind/e2e.sh does both).
The chart is installed beforehand; each test brings its own namespace and fleet.
"""

from __future__ import annotations

import itertools
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.e2e.helpers import RELEASE_NS, http_in_pod, kind_fleet, pod_of, running_pods
from tests.plugins.operator import (
    FLEET_TIERS,
    all_signed_off,
    create_tiers,
    get_tier,
    kubectl,
    patch_tier,
    phases,
    release,
    tier_ready,
    wait_for,
)

from tiergate.domain.revision import revision_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

TIERS = FLEET_TIERS


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_in_order(kube_api: client.ApiClient, namespace: str) -> None:
    """Each tier started its rollout only after the tier below signed its revision off."""
    rollouts = {t: get_tier(kube_api, namespace, t)["status"]["rollout"] for t in TIERS}
    for lower, higher in itertools.pairwise(TIERS):
        assert _ts(rollouts[higher]["startedAt"]) >= _ts(rollouts[lower]["signedOffAt"]), (lower, higher)


@pytest.fixture
def kubeconfig() -> Path:
    """The cluster's kubeconfig."""
    return Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])


@pytest.fixture
def fleet(
    kube_api: client.ApiClient, namespace: str, fleet_env: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The example fleet created and signed off at its first revision."""
    docs = kind_fleet()
    create_tiers(kube_api, namespace, docs)
    first = {d["metadata"]["name"]: revision_of(d["spec"]["template"]) for d in docs}
    wait_for(
        lambda: all_signed_off(kube_api, namespace, first), timeout=300, interval=1, what="fleet signed off"
    )
    return docs, first


def test_the_example_fleet_runs_in_real_containers_that_become_ready(
    kube_api: client.ApiClient, namespace: str, fleet: tuple[list[dict[str, Any]], dict[str, str]]
) -> None:
    docs, first = fleet
    core = client.CoreV1Api(kube_api)
    apps = client.AppsV1Api(kube_api)
    for doc in docs:
        name = doc["metadata"]["name"]
        assert tier_ready(kube_api, namespace, name), name
        dep = apps.read_namespaced_deployment(name, namespace)
        assert dep.spec.template.metadata.labels["tiergate.io/revision"] == first[name]
        assert dep.status.ready_replicas == doc["spec"]["replicas"]
        pods = core.list_namespaced_pod(namespace, label_selector=f"tiergate.io/tier={name}").items
        assert len(pods) == doc["spec"]["replicas"]
        for pod in pods:
            assert pod.status.phase == "Running"
            (status,) = pod.status.container_statuses
            # A real container of our image, Ready through its /readyz probe.
            assert status.ready and status.image.endswith("tiergate:dev"), status
            assert status.container_id.startswith("containerd://")


def test_a_good_release_rolls_through_the_tiers_in_order(
    kube_api: client.ApiClient, namespace: str, fleet: tuple[list[dict[str, Any]], dict[str, str]]
) -> None:
    docs, _ = fleet
    second = release(kube_api, namespace, docs, RELEASE="2")
    wait_for(lambda: all_signed_off(kube_api, namespace, second), timeout=300, interval=1, what="release 2")
    assert_in_order(kube_api, namespace)


def test_workers_that_never_bind_halt_tier_0_which_rolls_back(
    kube_api: client.ApiClient, namespace: str, fleet: tuple[list[dict[str, Any]], dict[str, str]]
) -> None:
    docs, first = fleet
    for doc in docs:
        patch_tier(
            kube_api,
            namespace,
            doc["metadata"]["name"],
            {"spec": {"healthGate": {"progressDeadline": "20s"}}},
        )
    bad = release(kube_api, namespace, docs, TIERGATE_FAULTS="no-bind", TIERGATE_ALLOW_FAULTS="1")
    wait_for(
        lambda: phases(kube_api, namespace)["bulk"] == "RolledBack", timeout=180, interval=1, what="rollback"
    )
    apps = client.AppsV1Api(kube_api)
    wait_for(
        lambda: (
            (d := apps.read_namespaced_deployment("bulk", namespace)).spec.template.metadata.labels[
                "tiergate.io/revision"
            ]
            == first["bulk"]
            and (d.status.ready_replicas or 0) == d.spec.replicas
        ),
        timeout=120,
        interval=1,
        what="bulk back on its signed-off revision",
    )
    bulk = get_tier(kube_api, namespace, "bulk")["status"]
    assert bulk["halt"]["revision"] == bad["bulk"] and bulk["signedOffRevision"] == first["bulk"]
    for t in ("standard", "priority"):
        st = get_tier(kube_api, namespace, t)["status"]
        assert st["phase"] == "Waiting" and st["waitingFor"] == "bulk", st
        dep = apps.read_namespaced_deployment(t, namespace)
        assert dep.spec.template.metadata.labels["tiergate.io/revision"] == first[t]


def test_killing_the_operator_pod_mid_rollout_resumes_it(
    kube_api: client.ApiClient,
    namespace: str,
    kubeconfig: Path,
    fleet: tuple[list[dict[str, Any]], dict[str, str]],
) -> None:
    docs, _ = fleet
    old = pod_of(kube_api, "operator")
    second = release(kube_api, namespace, docs, RELEASE="3")
    wait_for(
        lambda: phases(kube_api, namespace)["standard"] in ("Progressing", "Baking"),
        timeout=180,
        interval=0.5,
        what="standard rolling",
    )
    kubectl(kubeconfig, "-n", RELEASE_NS, "delete", "pod", old, "--grace-period=0", "--force", "--wait=false")
    wait_for(
        lambda: [p for p in running_pods(kube_api, "operator") if p != old],
        timeout=120,
        interval=1,
        what="a new operator pod",
    )
    wait_for(lambda: all_signed_off(kube_api, namespace, second), timeout=420, interval=1, what="release 3")
    assert_in_order(kube_api, namespace)


def test_a_message_posted_to_the_api_reaches_the_smsc_pod(
    kube_api: client.ApiClient,
    namespace: str,
    kubeconfig: Path,
    fleet: tuple[list[dict[str, Any]], dict[str, str]],
) -> None:
    smsc = pod_of(kube_api, "smsc")
    before = http_in_pod(kubeconfig, smsc, "GET", "http://127.0.0.1:8025/stats")["body"]["accepted"]
    api = pod_of(kube_api, "api")
    sent = http_in_pod(
        kubeconfig,
        api,
        "POST",
        "http://127.0.0.1:8080/v1/messages",
        {"destination": "+4915112345678", "sender_id": "Acme", "body": "e2e hello", "traffic_class": "bulk"},
        token="e2e-token",
    )
    assert sent["status"] == 202, sent
    message_id = sent["body"]["id"]

    def delivered() -> int:
        stats = http_in_pod(kubeconfig, smsc, "GET", "http://127.0.0.1:8025/stats")["body"]
        return int(stats["accepted"]) - int(before)

    wait_for(lambda: delivered() >= 1, timeout=120, interval=2, what="the SMSC accepted the message")

    def submitted() -> dict[str, Any] | None:
        view = http_in_pod(
            kubeconfig, api, "GET", f"http://127.0.0.1:8080/v1/messages/{message_id}", token="e2e-token"
        )
        body: dict[str, Any] = view["body"]
        return body if body.get("state") in ("submitted", "delivered") else None

    message = wait_for(submitted, timeout=60, interval=2, what="the message marked submitted")
    assert message["tier"] == "bulk" and message["upstream_message_id"], message
