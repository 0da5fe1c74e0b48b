"""charts/tiergate rendered and applied for real (server-side apply) to the local control plane.

Every rendered object must be accepted; the operator, the sender API and the replay service come
up Ready on kwok nodes, their pods backed by real `tiergate` processes (the pod runner); a
SenderTier applied afterwards is reconciled by the chart's operator. Each service account is
checked with `kubectl auth can-i --list`: the operator holds exactly what
deploy/operator/rbac.yaml grants; the API, replay and the workers' account nothing beyond what
every account has.

The pod runner mounts no service account token and ignores volumes, so the operator gets a
kubeconfig holding a token of the chart's own service account (extraEnv), and the hostPath
store's mount path is a temporary directory of this machine.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.plugins.operator import example_fleet, get_tier, kubectl, wait_for
from tests.unit.chart.chart_helm import CHART, VARIANTS, helm, render, source_docs

from tiergate.api.v1alpha1 import GROUP, PLURAL, VERSION
from tiergate_kits.devcluster.cluster import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

COMPONENTS = ("operator", "api", "replay")
Grant = tuple[str, str]  # (resource or non-resource URL, verb)


@dataclass
class Install:
    """A release of the chart applied to the control plane."""

    namespace: str
    release: str
    docs: list[dict[str, Any]]
    kubeconfig: Path
    apply_output: str

    def name(self, component: str) -> str:
        """The object name of a component."""
        return f"{self.release}-tiergate-{component}"


def create_namespace(core: client.CoreV1Api, name: str, labels: dict[str, str] | None = None) -> None:
    """Create a namespace for the test."""
    core.create_namespace(
        {"metadata": {"name": name, "labels": {"tiergate.io/test": "true", **(labels or {})}}}
    )


def delete_namespace(core: client.CoreV1Api, name: str) -> None:
    """Delete a namespace, gone or not."""
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def token_kubeconfig(admin: Path, token: str, path: Path) -> Path:
    """A kubeconfig for the admin's cluster that authenticates with a service account token."""
    cfg = yaml.safe_load(admin.read_text())
    cluster = dict(cfg["clusters"][0]["cluster"])
    if "certificate-authority" in cluster:
        ca = Path(cluster.pop("certificate-authority"))
        cluster["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
                "current-context": "sa",
            }
        )
    )
    return path


def apply(kubeconfig: Path, docs: list[dict[str, Any]]) -> str:
    """Server-side apply of the documents; every object must be accepted."""
    done = kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--field-manager=helm-chart-test",
        "--force-conflicts",
        "-f",
        "-",
        input_text=yaml.safe_dump_all(docs),
    )
    return done.stdout


def render_release(namespace: str, release: str, values: dict[str, Any], *args: str) -> list[dict[str, Any]]:
    """`helm template` with a values document, CRDs included."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(yaml.safe_dump(values))
        f.flush()
        return render("--include-crds", "--values", f.name, *args, namespace=namespace, release=release)


def pod_ready(pod: client.V1Pod) -> bool:
    """Whether a pod is Running with its Ready condition True."""
    conditions = pod.status.conditions or []
    return pod.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in conditions)


def ready_pods(core: client.CoreV1Api, namespace: str, release: str, component: str) -> list[client.V1Pod]:
    """The Ready pods of a component of the release."""
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component={component}"
    return [p for p in core.list_namespaced_pod(namespace, label_selector=selector).items if pod_ready(p)]


def cluster_scoped_cleanup(kubeconfig: Path, docs: list[dict[str, Any]]) -> None:
    """Delete the release's cluster-scoped RBAC objects."""
    for d in docs:
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            kubectl(
                kubeconfig,
                "delete",
                d["kind"].lower(),
                d["metadata"]["name"],
                "--ignore-not-found",
                check=False,
            )


def can_i(kubeconfig: Path, namespace: str, account_ns: str, account: str) -> set[Grant]:
    """`kubectl auth can-i --list` of a service account in a namespace, as (resource, verb) pairs."""
    done = kubectl(
        kubeconfig,
        "auth",
        "can-i",
        "--list",
        f"--as=system:serviceaccount:{account_ns}:{account}",
        "-n",
        namespace,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    header = lines[0]
    starts = [header.index(col) for col in ("Resources", "Non-Resource URLs", "Resource Names", "Verbs")]
    grants: set[Grant] = set()
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        resource, urls, names, verbs = cells
        targets = urls.strip("[]").split() if urls != "[]" else [resource]
        if names != "[]":  # a grant on named objects only: "secrets[tiergate-notifications]"
            targets = [f"{resource}[{n}]" for n in names.strip("[]").split()]
        for target in targets:
            for verb in verbs.strip("[]").split():
                grants.add((target, verb))
    return grants


def rbac_grants(kind: str) -> set[Grant]:
    """The (resource, verb) pairs a ClusterRole or Role of deploy/operator/rbac.yaml grants (a
    resource limited to named objects as ``resource[name]``)."""
    (rules,) = [d["rules"] for d in source_docs("deploy/operator/rbac.yaml") if d["kind"] == kind]
    grants: set[Grant] = set()
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                name = resource if not group else f"{resource.split('/')[0]}.{group}"
                if "/" in resource and group:
                    name = f"{name}/{resource.split('/', 1)[1]}"
                named = [f"{name}[{n}]" for n in rule.get("resourceNames", [])] or [name]
                for verb in rule["verbs"]:
                    grants |= {(target, verb) for target in named}
    return grants


def remove_tiers(custom: client.CustomObjectsApi, namespace: str) -> None:
    """Delete the namespace's SenderTiers; drop the finalizer if no operator removes it in time."""
    group = (GROUP, VERSION, namespace, PLURAL)
    try:
        tiers = custom.list_namespaced_custom_object(*group)["items"]
    except ApiException as exc:
        if exc.status == 404:  # the CRD was never applied
            return
        raise
    for tier in tiers:
        custom.delete_namespaced_custom_object(*group, tier["metadata"]["name"])
    deadline = time.monotonic() + 60
    while (left := custom.list_namespaced_custom_object(*group)["items"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    for tier in left:
        custom.patch_namespaced_custom_object(
            *group, tier["metadata"]["name"], {"metadata": {"finalizers": None}}
        )


@pytest.fixture(scope="module")
def install(
    local_cluster: LocalCluster | None,
    kubeconfig_path: Path,
    kube_api: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Install]:
    """The chart (default values but a hostPath store) applied into a fresh namespace."""
    if local_cluster is None:
        pytest.skip("needs the local control plane: its pods are backed by local processes")
    core = client.CoreV1Api(kube_api)
    release = f"c{uuid.uuid4().hex[:8]}"
    namespace = f"t-{release}"
    create_namespace(core, namespace)
    work = tmp_path_factory.mktemp("chart")
    store = work / "store"
    store.mkdir()
    operator_kubeconfig = work / "operator-kubeconfig"
    values = {
        "store": {"sqlite": {"volume": "hostPath", "hostPath": str(store), "mountPath": str(store)}},
        "operator": {"extraEnv": [{"name": "KUBECONFIG", "value": str(operator_kubeconfig)}]},
    }
    docs = render_release(namespace, release, values)
    try:
        # The accounts first, so the operator's token exists before its pods start.
        apply(kubeconfig_path, [d for d in docs if d["kind"] == "ServiceAccount"])
        token = core.create_namespaced_service_account_token(
            f"{release}-tiergate-operator", namespace, {"spec": {"expirationSeconds": 7200}}
        ).status.token
        token_kubeconfig(kubeconfig_path, token, operator_kubeconfig)
        output = apply(kubeconfig_path, docs)
        yield Install(namespace, release, docs, kubeconfig_path, output)
    finally:
        remove_tiers(client.CustomObjectsApi(kube_api), namespace)
        delete_namespace(core, namespace)
        cluster_scoped_cleanup(kubeconfig_path, docs)


def test_every_rendered_object_is_accepted(install: Install, kube_api: client.ApiClient) -> None:
    lines = [line for line in install.apply_output.splitlines() if line.strip()]
    assert len(lines) == len(install.docs), install.apply_output
    assert all(line.endswith("serverside-applied") for line in lines), install.apply_output
    kinds = {d["kind"] for d in install.docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ClusterRole", "Secret"} <= kinds
    policy = client.PolicyV1Api(kube_api)
    budgets = {b.metadata.name for b in policy.list_namespaced_pod_disruption_budget(install.namespace).items}
    assert budgets == {install.name(c) for c in COMPONENTS}


def test_operator_api_and_replay_come_up_ready(install: Install, kube_api: client.ApiClient) -> None:
    core = client.CoreV1Api(kube_api)
    expected = {"operator": 2, "api": 1, "replay": 1}
    wait_for(
        lambda: all(
            len(ready_pods(core, install.namespace, install.release, c)) == n for c, n in expected.items()
        ),
        timeout=300,
        interval=2,
        what="operator x2, api and replay pods Ready",
    )
    # Exactly one operator acts: the Lease names one of the two pods.
    operators = {p.metadata.name for p in ready_pods(core, install.namespace, install.release, "operator")}
    coordination = client.CoordinationV1Api(kube_api)

    def holder() -> str | None:
        try:
            lease = coordination.read_namespaced_lease("tiergate-operator", install.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return str(lease.spec.holder_identity or "") or None

    assert wait_for(holder, timeout=120, interval=1, what="the operator's Lease held") in operators
    # The API and replay answer with the tokens from the chart's Secrets.
    api_token = secret_value(core, install.namespace, install.name("api-tokens"), "tokens").split("=")[0]
    replay_tokens = secret_value(core, install.namespace, install.name("replay-tokens"), "tokens")
    on_call = next(line.split("=")[0] for line in replay_tokens.splitlines() if line.endswith("=on-call"))
    (api_pod,) = ready_pods(core, install.namespace, install.release, "api")
    (replay_pod,) = ready_pods(core, install.namespace, install.release, "replay")
    message = {
        "destination": "+4915112345678",
        "sender_id": "Acme",
        "body": "chart test",
        "traffic_class": "bulk",
    }
    posted = httpx.post(
        f"http://{api_pod.status.pod_ip}:8080/v1/messages",
        json=message,
        headers={"authorization": f"Bearer {api_token}"},
        timeout=10,
        trust_env=False,
    )
    assert posted.status_code == 202, posted.text
    refused = httpx.post(
        f"http://{api_pod.status.pod_ip}:8080/v1/messages", json=message, timeout=10, trust_env=False
    )
    assert refused.status_code == 401
    listed = httpx.get(
        f"http://{replay_pod.status.pod_ip}:8090/v1/discards",
        headers={"authorization": f"Bearer {on_call}"},
        timeout=10,
        trust_env=False,
    )
    assert listed.status_code == 200, listed.text


def secret_value(core: client.CoreV1Api, namespace: str, name: str, key: str) -> str:
    """One decoded value of a Secret."""
    return base64.b64decode(core.read_namespaced_secret(name, namespace).data[key]).decode()


def test_a_sender_tier_applied_afterwards_is_reconciled(install: Install, kube_api: client.ApiClient) -> None:
    core = client.CoreV1Api(kube_api)
    wait_for(
        lambda: len(ready_pods(core, install.namespace, install.release, "operator")) == 2,
        timeout=300,
        interval=2,
        what="operators Ready",
    )
    (tier,) = [d for d in example_fleet(checks="none") if d["metadata"]["name"] == "bulk"]
    tier["spec"]["replicas"] = 1
    tier["metadata"]["namespace"] = install.namespace
    apply(install.kubeconfig, [tier])
    status = wait_for(
        lambda: (
            (get_tier(kube_api, install.namespace, "bulk").get("status") or {}).get("phase")
            and (get_tier(kube_api, install.namespace, "bulk")["status"])
        ),
        timeout=180,
        interval=1,
        what="the SenderTier's status phase",
    )
    assert status["phase"] in {"Pending", "Waiting", "Progressing", "Baking", "SignedOff", "Halted"}, status
    deployment = client.AppsV1Api(kube_api).read_namespaced_deployment("bulk", install.namespace)
    assert deployment.metadata.labels["app.kubernetes.io/component"] == "sender-worker"


def test_each_service_account_can_do_only_what_its_component_needs(install: Install) -> None:
    ns, kc = install.namespace, install.kubeconfig
    # What any service account may do (discovery, self reviews): a fresh account with no bindings.
    kubectl(kc, "-n", ns, "create", "serviceaccount", "baseline")
    baseline = can_i(kc, ns, ns, "baseline")
    assert ("selfsubjectaccessreviews.authorization.k8s.io", "create") in baseline
    assert not {g for g in baseline if g[0].startswith(("pods", "deployments", "sendertiers", "secrets"))}
    for account in (install.name("api"), install.name("replay"), "tiergate-sender-worker"):
        assert can_i(kc, ns, ns, account) == baseline, account
    operator = can_i(kc, ns, ns, install.name("operator"))
    assert operator - baseline == rbac_grants("ClusterRole") | rbac_grants("Role")
    elsewhere = can_i(kc, "default", ns, install.name("operator"))
    assert elsewhere - baseline == rbac_grants("ClusterRole")


def test_namespaced_install_grants_only_in_the_watched_namespaces(
    local_cluster: LocalCluster | None, kubeconfig_path: Path, kube_api: client.ApiClient
) -> None:
    if local_cluster is None:
        pytest.skip("needs the local control plane")
    core = client.CoreV1Api(kube_api)
    release = f"n{uuid.uuid4().hex[:8]}"
    namespace, watched, other = f"t-{release}", f"t-{release}-a", f"t-{release}-b"
    for ns in (namespace, watched, other):
        create_namespace(core, ns)
    values = {"rbac": {"namespaced": True}, "operator": {"watchNamespaces": [watched], "replicas": 0}}
    docs = [d for d in render_release(namespace, release, values) if d["kind"] != "Deployment"]
    try:
        assert not [d for d in docs if d["kind"].startswith("Cluster")]
        output = apply(kubeconfig_path, [d for d in docs if d["kind"] != "CustomResourceDefinition"])
        assert all(line.endswith("serverside-applied") for line in output.splitlines() if line.strip()), (
            output
        )
        kubectl(kubeconfig_path, "-n", namespace, "create", "serviceaccount", "baseline")
        baseline = can_i(kubeconfig_path, namespace, namespace, "baseline")
        sa = f"{release}-tiergate-operator"
        assert can_i(kubeconfig_path, watched, namespace, sa) - baseline == rbac_grants("ClusterRole")
        assert can_i(kubeconfig_path, other, namespace, sa) - baseline == set()
        assert can_i(kubeconfig_path, namespace, namespace, sa) - baseline == rbac_grants("Role")
    finally:
        for ns in (namespace, watched, other):
            delete_namespace(core, ns)


def test_bad_values_fail_helm_install_with_the_schema_message(
    local_cluster: LocalCluster | None, kubeconfig_path: Path
) -> None:
    done = helm(
        "install",
        "bad",
        str(CHART),
        "--namespace",
        "default",
        "--set",
        "store.engine=postgresql",
        kubeconfig=kubeconfig_path,
    )
    assert done.returncode != 0
    assert "/store/postgresql/existingSecret" in done.stderr, done.stderr
    listed = helm("list", "--namespace", "default", "--output", "json", kubeconfig=kubeconfig_path)
    assert "bad" not in {r["name"] for r in json.loads(listed.stdout or "[]")}


@pytest.mark.parametrize("variant", ["default", "kind", "postgresql", "namespaced"])
def test_every_variant_is_accepted_by_a_server_side_dry_run(
    variant: str, kubeconfig_path: Path, kube_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(kube_api)
    release = f"d{uuid.uuid4().hex[:8]}"
    namespace, team = f"t-{release}", f"t-{release}-team"
    # The API server's PodSecurity admission warns about every workload below restricted.
    restricted = {"pod-security.kubernetes.io/warn": "restricted"}
    for ns in (namespace, team):
        create_namespace(core, ns, restricted)
    args = list(VARIANTS[variant])
    if variant == "namespaced":
        args = ["--set", "rbac.namespaced=true", "--set", f"operator.watchNamespaces={{{team}}}"]
    docs = render(*args, namespace=namespace, release=release)
    try:
        done = kubectl(
            kubeconfig_path,
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            "-",
            input_text=yaml.safe_dump_all(docs),
        )
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        assert len(lines) == len(docs), done.stdout
        assert all(line.endswith("(server dry run)") for line in lines), done.stdout
        warnings = [line for line in done.stderr.splitlines() if "would violate PodSecurity" in line]
        if variant == "kind":
            # The one exception, kind's hostPath store (kubectl prints a repeated warning once).
            assert warnings and all(
                'volume "store" uses restricted volume type "hostPath"' in w for w in warnings
            )
        else:
            assert not warnings, done.stderr
    finally:
        for ns in (namespace, team):
            delete_namespace(core, ns)


def test_generated_tokens_are_kept_when_the_chart_is_rendered_again(
    install: Install, kube_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(kube_api)
    again = helm(
        "template",
        install.release,
        str(CHART),
        "--namespace",
        install.namespace,
        "--dry-run=server",
        kubeconfig=install.kubeconfig,
    )
    assert again.returncode == 0, again.stderr
    secrets = {
        d["metadata"]["name"]: d for d in yaml.safe_load_all(again.stdout) if d and d["kind"] == "Secret"
    }
    for name in (install.name("api-tokens"), install.name("replay-tokens")):
        live = core.read_namespaced_secret(name, install.namespace).data
        assert secrets[name]["data"] == live, name


def test_helm_install_against_the_server_prints_where_things_are(
    local_cluster: LocalCluster | None, kubeconfig_path: Path, kube_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(kube_api)
    release = f"h{uuid.uuid4().hex[:8]}"
    namespace = f"t-{release}"
    create_namespace(core, namespace)
    try:
        done = helm(
            "install",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--dry-run=server",
            kubeconfig=kubeconfig_path,
        )
    finally:
        delete_namespace(core, namespace)
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert f"Secret {release}-tiergate-api-tokens, key tokens" in notes
    assert f"http://{release}-tiergate-replay.{namespace}:8090" in notes
    assert "not created: set upstream.existingSecret" in notes


@pytest.mark.postgres
def test_a_postgresql_store_runs_several_api_and_replay_replicas(
    local_cluster: LocalCluster | None, kubeconfig_path: Path, kube_api: client.ApiClient, postgres_dsn: str
) -> None:
    if local_cluster is None:
        pytest.skip("needs the local control plane: its pods are backed by local processes")
    core = client.CoreV1Api(kube_api)
    release = f"p{uuid.uuid4().hex[:8]}"
    namespace = f"t-{release}"
    create_namespace(core, namespace)
    values = {
        "store": {"engine": "postgresql", "postgresql": {"existingSecret": "tiergate-db"}},
        "operator": {"enabled": False},
        "api": {"replicas": 2, "auth": {"tokens": "pg-token=acme"}},
        "replay": {"replicas": 2},
    }
    docs = [d for d in render_release(namespace, release, values) if d["kind"] != "CustomResourceDefinition"]
    try:
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "tiergate-db"}, "stringData": {"dsn": postgres_dsn}}
        )
        apply(kubeconfig_path, docs)
        wait_for(
            lambda: all(len(ready_pods(core, namespace, release, c)) == 2 for c in ("api", "replay")),
            timeout=300,
            interval=2,
            what="two API and two replay pods Ready on PostgreSQL",
        )
        first, second = (p.status.pod_ip for p in ready_pods(core, namespace, release, "api"))
        headers = {"authorization": "Bearer pg-token"}
        message = {
            "destination": "+4915112345678",
            "sender_id": "Acme",
            "body": "pg",
            "traffic_class": "bulk",
        }
        posted = httpx.post(
            f"http://{first}:8080/v1/messages", json=message, headers=headers, timeout=10, trust_env=False
        )
        assert posted.status_code == 202, posted.text
        # The other replica reads it back: one store behind both.
        read = httpx.get(
            f"http://{second}:8080/v1/messages/{posted.json()['id']}",
            headers=headers,
            timeout=10,
            trust_env=False,
        )
        assert read.status_code == 200 and read.json()["state"] == "queued", read.text
    finally:
        delete_namespace(core, namespace)
