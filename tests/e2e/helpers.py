"""Helpers of the e2e suite: a cluster from KUBECONFIG with the tiergate chart installed.

The suite never starts a cluster: `scripts/kind/e2e.sh` (or a person) creates one, installs
the chart into ``TIERGATE_E2E_NAMESPACE`` (default tiergate-system) and exports KUBECONFIG.
The workers of every test fleet share the chart's SQLite store through the node's hostPath
(a one-node kind cluster) and send to the chart's test SMSC.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.plugins.operator import example_fleet, kubectl

RELEASE_NS = os.environ.get("TIERGATE_E2E_NAMESPACE", "tiergate-system")
STORE_HOST_PATH = os.environ.get("TIERGATE_E2E_STORE_PATH", "/var/lib/tiergate-store")
STORE_URL = "sqlite:///var/lib/tiergate/store/tiergate.db"
SMSC_URL = f"smpp://tiergate-smsc.{RELEASE_NS}.svc.cluster.local:2775"


def kind_fleet(**gate: Any) -> list[dict[str, Any]]:
    """The example fleet with quick HTTP-only gates, its workers mounting the shared store."""
    settings = {"progressDeadline": "90s", "bake": "3s", "interval": "1s", "failureLimit": 2, **gate}
    docs = example_fleet(checks="http", gate=settings)
    for doc in docs:
        spec = doc["spec"]["template"]["spec"]
        spec["volumes"] = [{"name": "store", "hostPath": {"path": STORE_HOST_PATH, "type": "Directory"}}]
        worker = spec["containers"][0]
        worker["volumeMounts"] = [{"name": "store", "mountPath": "/var/lib/tiergate/store"}]
        worker["imagePullPolicy"] = "Never"
    return copy.deepcopy(docs)


def running_pods(kube_api: client.ApiClient, component: str) -> list[str]:
    """The names of the running pods of a chart component."""
    pods = (
        client.CoreV1Api(kube_api)
        .list_namespaced_pod(RELEASE_NS, label_selector=f"app.kubernetes.io/component={component}")
        .items
    )
    return [
        str(p.metadata.name)
        for p in pods
        if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    ]


def pod_of(kube_api: client.ApiClient, component: str) -> str:
    """The name of a running pod of a chart component."""
    running = running_pods(kube_api, component)
    assert running, f"no running {component} pod in {RELEASE_NS}"
    return running[0]


def http_in_pod(kubeconfig: Path, pod: str, method: str, url: str, body: Any = None, token: str = "") -> Any:
    """An HTTP request made from inside a pod (its own Python); returns status and JSON body."""
    script = (
        "import json,sys,httpx;"
        "a=json.loads(sys.argv[1]);"
        "r=httpx.request(a['m'],a['u'],json=a['b'],headers=a['h'],timeout=10);"
        "print(json.dumps({'status':r.status_code,'body':r.json() if r.content else None}))"
    )
    headers = {"authorization": f"Bearer {token}"} if token else {}
    arg = json.dumps({"m": method, "u": url, "b": body, "h": headers})
    done = kubectl(kubeconfig, "-n", RELEASE_NS, "exec", pod, "--", "python3", "-c", script, arg)
    return json.loads(done.stdout.strip().splitlines()[-1])
