"""The pod runner backs pods on kwok nodes with real processes, like a kubelet.

Runs against the session's local control plane (real API server, controller
manager, scheduler and kwok); these tests look at local processes, so they are
skipped when KUBECONFIG points at another cluster.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tiergate_kits.devcluster.cluster import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

T = TypeVar("T")

SERVER = """
import http.server, json, os, sys
code = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/env":
            body = json.dumps(dict(os.environ)).encode()
        else:
            body = b"ok" if code < 400 else b"not ready"
        self.send_response(code if self.path == "/readyz" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ["TIERGATE_HTTP_HOST"], 8080), H).serve_forever()
"""


@pytest.fixture(autouse=True)
def _local_only(local_cluster: LocalCluster | None) -> None:
    if local_cluster is None:
        pytest.skip("pod runner tests need the local control plane, not KUBECONFIG")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def container(code: int = 200, **extra: Any) -> dict[str, Any]:
    return {
        "name": "server",
        "image": "ignored.invalid/server:1",
        "command": ["python", "-c", SERVER, str(code)],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
        **extra,
    }


def pod_body(name: str, spec_container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [spec_container], "terminationGracePeriodSeconds": 5, **spec},
    }


def pid_of(pod: client.V1Pod) -> int:
    (status,) = pod.status.container_statuses
    return int(status.container_id.removeprefix("process://"))


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def test_deployment_pods_become_ready_and_gc_kills_their_processes(
    kube_api: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [container()], "terminationGracePeriodSeconds": 5},
                },
            },
        },
    )
    wait_for(
        "2 ready replicas",
        lambda: (apps.read_namespaced_deployment("web", namespace).status.ready_replicas or 0) == 2,
    )
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    ips = {p.status.pod_ip for p in pods}
    assert len(ips) == 2
    assert all(p.spec.node_name.startswith("kwok-node-") for p in pods)
    for ip in ips:
        assert httpx.get(f"http://{ip}:8080/readyz", trust_env=False).text == "ok"
    pids = [pid_of(p) for p in pods]
    assert all(process_alive(pid) for pid in pids)

    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    wait_for(
        "pods garbage-collected",
        lambda: not core.list_namespaced_pod(namespace, label_selector="app=web").items,
    )
    wait_for("processes gone", lambda: not any(process_alive(pid) for pid in pids), 10)


def test_pod_failing_readiness_stays_not_ready(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod(namespace, pod_body("sick", container(503)))
    pod = wait_for(
        "container running",
        lambda: (
            p
            if (p := core.read_namespaced_pod("sick", namespace)).status.container_statuses
            and p.status.container_statuses[0].state.running
            else None
        ),
    )
    ip = pod.status.pod_ip
    wait_for(
        "server answering",
        lambda: _status_code(f"http://{ip}:8080/readyz") == 503,
    )
    time.sleep(3)
    pod = core.read_namespaced_pod("sick", namespace)
    assert pod.status.phase == "Running"
    assert not ready(pod)
    assert pod.status.container_statuses[0].ready is False


def _status_code(url: str) -> int:
    try:
        return httpx.get(url, trust_env=False, timeout=1).status_code
    except httpx.HTTPError:
        return 0


def test_crashing_process_is_restarted_with_count(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    crash = {
        "name": "crash",
        "image": "ignored",
        "command": ["python", "-c", "import sys, time; time.sleep(0.3); sys.exit(3)"],
    }
    core.create_namespaced_pod(namespace, pod_body("crashy", crash))

    def restarted() -> client.V1ContainerStatus | None:
        statuses = core.read_namespaced_pod("crashy", namespace).status.container_statuses
        return statuses[0] if statuses and statuses[0].restart_count >= 2 else None

    status = wait_for("two restarts", restarted, 30)
    assert status.last_state.terminated.exit_code == 3
    assert core.read_namespaced_pod("crashy", namespace).status.phase == "Running"


def test_env_reaches_the_process_and_deletion_honours_grace(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"k": "v1"}})
    env = [
        {"name": "T_LITERAL", "value": "lit"},
        {"name": "T_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "T_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    core.create_namespaced_pod(namespace, pod_body("envy", container(env=env)))
    pod = wait_for(
        "pod ready",
        lambda: p if ready(p := core.read_namespaced_pod("envy", namespace)) else None,
    )
    seen = httpx.get(f"http://{pod.status.pod_ip}:8080/env", trust_env=False).json()
    assert seen["T_LITERAL"] == "lit"
    assert seen["T_NAME"] == "envy"
    assert seen["T_SECRET"] == "v1"
    assert seen["POD_IP"] == seen["TIERGATE_HTTP_HOST"] == pod.status.pod_ip
    assert seen["PATH"].split(os.pathsep)[0].endswith("bin")

    pid = pid_of(pod)
    core.delete_namespaced_pod("envy", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("envy", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for("pod removed by the runner", gone, 15)
    assert not process_alive(pid)


def test_failing_liveness_restarts_the_process(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    liveness = {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2}
    spec = container(503, livenessProbe=liveness, readinessProbe=None)
    core.create_namespaced_pod(namespace, pod_body("dying", spec, terminationGracePeriodSeconds=1))

    def restarted() -> client.V1ContainerStatus | None:
        statuses = core.read_namespaced_pod("dying", namespace).status.container_statuses
        return statuses[0] if statuses and statuses[0].restart_count >= 1 else None

    status = wait_for("a liveness restart", restarted, 30)
    assert status.last_state.terminated is not None


def test_kwok_leaves_pods_alone_when_there_is_no_process(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod(namespace, pod_body("imageonly", {"name": "c", "image": "nginx"}))

    def waiting() -> client.V1ContainerStatus | None:
        statuses = core.read_namespaced_pod("imageonly", namespace).status.container_statuses
        return statuses[0] if statuses and statuses[0].state.waiting else None

    status = wait_for("the runner to report the missing command", waiting)
    assert status.state.waiting.reason == "RunContainerError"
    time.sleep(2)
    pod = core.read_namespaced_pod("imageonly", namespace)
    assert pod.status.phase == "Pending"
    assert not ready(pod)
