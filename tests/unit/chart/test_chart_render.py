"""What charts/tiergate renders, for the default values and its variants, read as objects.

The chart takes its CRD, the operator's RBAC rules and the alerting rules from their one
source in the repository; every pod meets the restricted Pod Security level; every component
has probes, requests, a PodDisruptionBudget and a NetworkPolicy.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.chart.chart_helm import (
    CHART,
    MONITORING_API,
    ROOT,
    VARIANTS,
    by_kind,
    helm,
    pod_specs,
    render,
    source_docs,
)

from tiergate.domain.notifications import SECRET_KEY, parse_receivers
from tiergate.sender.connectors.config import parse_upstream

COMPONENTS = ("operator", "api", "replay")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """A container's env entries by name."""
    return {e["name"]: e for e in container.get("env", [])}


def operator_source(kind: str) -> list[dict[str, Any]]:
    """The rules of the ClusterRole or Role in deploy/operator/rbac.yaml."""
    (rules,) = [d["rules"] for d in source_docs("deploy/operator/rbac.yaml") if d["kind"] == kind]
    return list(rules)


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_passes(variant: str) -> None:
    args = VARIANTS[variant]
    if "--api-versions" in args:  # helm lint has no such flag: it lints without those objects
        i = args.index("--api-versions")
        args = args[:i] + args[i + 2 :]
    done = helm("lint", str(CHART), "--strict", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_runs_restricted(variant: str) -> None:
    docs = render(*VARIANTS[variant])
    pods = dict(pod_specs(docs))
    assert pods
    for name, pod in pods.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            sc = c["securityContext"]
            where = f"{name}/{c['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["runAsNonRoot"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert "runAsUser" not in sc and not sc.get("privileged"), where
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if c["image"].startswith("tiergate:"):
                assert mounts.get("/tmp") in tmp_volumes, where


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_deployment_has_probes_requests_and_a_budget(variant: str) -> None:
    docs = render(*VARIANTS[variant])
    budgets = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for d in by_kind(docs, "PodDisruptionBudget").values()
    }
    assert budgets >= set(COMPONENTS)
    for name, dep in by_kind(docs, "Deployment").items():
        component = dep["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for c in dep["spec"]["template"]["spec"]["containers"]:
            where = f"{name}/{c['name']}"
            assert c["livenessProbe"] and c["readinessProbe"], where
            assert c["resources"]["requests"], where
            if component in COMPONENTS:
                assert c["command"] == ["tiergate"], where
                assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where
                assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where
                ports = {p["name"] for p in c["ports"]}
                assert c["readinessProbe"]["httpGet"]["port"] in ports, where


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_component_has_its_own_service_account_and_only_the_operator_a_token(variant: str) -> None:
    docs = render(*VARIANTS[variant])
    accounts = by_kind(docs, "ServiceAccount")
    for name, pod in pod_specs(docs):
        sa = pod["serviceAccountName"]
        assert sa in accounts, name
        needs_api = name.endswith(("-operator", "-prometheus"))
        assert pod["automountServiceAccountToken"] is needs_api, name
        assert accounts[sa]["automountServiceAccountToken"] is needs_api, name
    bound = {
        s["name"]
        for kind in ("RoleBinding", "ClusterRoleBinding")
        for b in by_kind(docs, kind).values()
        for s in b["subjects"]
    }
    assert not bound & {"tiergate-api", "tiergate-replay", "tiergate-smsc", "tiergate-sender-worker"}
    # The workers' account, for their SenderTier templates: no token, no rights.
    assert accounts["tiergate-sender-worker"]["automountServiceAccountToken"] is False


def test_default_install_runs_the_operator_twice_and_the_services_once() -> None:
    docs = render()
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"tiergate-operator", "tiergate-api", "tiergate-replay"}
    assert deployments["tiergate-operator"]["spec"]["replicas"] == 2
    assert deployments["tiergate-api"]["spec"]["replicas"] == 1
    for dep in deployments.values():
        for c in dep["spec"]["template"]["spec"]["containers"]:
            assert c["image"] == "tiergate:dev" and c["imagePullPolicy"] == "IfNotPresent"
    operator = deployments["tiergate-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert operator["args"][:2] == ["operator", "run"]
    assert not any(a.startswith("--namespace") for a in operator["args"])
    assert env_of(operator)["TIERGATE_REPLAY_URL"]["value"] == "http://tiergate-replay:8090"
    # SQLite on a claim, one writer at a time.
    (claim,) = by_kind(docs, "PersistentVolumeClaim").values()
    api = deployments["tiergate-api"]["spec"]
    assert api["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in api["template"]["spec"]["volumes"]}
    assert volumes["store"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    store_url = env_of(api["template"]["spec"]["containers"][0])["TIERGATE_STORE_URL"]["value"]
    assert store_url == "sqlite:///var/lib/tiergate/store/tiergate.db"
    # The claim is ReadWriteOnce: replay runs on the API's node.
    replay = deployments["tiergate-replay"]["spec"]["template"]["spec"]
    (term,) = replay["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["labelSelector"]["matchLabels"] == api["selector"]["matchLabels"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    # Restricted Pod Security allows no hostPath; no upstream Secret without credentials.
    assert not [v for _, pod in pod_specs(docs) for v in pod["volumes"] if "hostPath" in v]
    assert "tiergate-upstream" not in by_kind(docs, "Secret")


def test_the_tokens_come_from_secrets_the_chart_makes_or_the_user_names() -> None:
    docs = render()
    secrets = by_kind(docs, "Secret")
    api = by_kind(docs, "Deployment")["tiergate-api"]["spec"]["template"]["spec"]["containers"][0]
    ref = env_of(api)["TIERGATE_API_TOKENS"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "tiergate-api-tokens", "key": "tokens"}
    assert "tiergate-api-tokens" in secrets and "tiergate-replay-tokens" in secrets
    docs = render(
        "--set",
        "api.auth.existingSecret=my-api,replay.auth.existingSecret=my-replay,upstream.existingSecret=smpp",
    )
    assert not by_kind(docs, "Secret")
    deployments = by_kind(docs, "Deployment")
    api = deployments["tiergate-api"]["spec"]["template"]["spec"]["containers"][0]
    replay = deployments["tiergate-replay"]["spec"]["template"]["spec"]["containers"][0]
    operator = deployments["tiergate-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert env_of(api)["TIERGATE_API_TOKENS"]["valueFrom"]["secretKeyRef"]["name"] == "my-api"
    assert env_of(replay)["TIERGATE_REPLAY_TOKENS"]["valueFrom"]["secretKeyRef"]["name"] == "my-replay"
    assert env_of(operator)["TIERGATE_REPLAY_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "my-replay"


def test_kind_values_keep_the_hostpath_store_the_smsc_and_prometheus() -> None:
    docs = render(*VARIANTS["kind"])
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) >= {"tiergate-smsc", "tiergate-prometheus"}
    for name in ("tiergate-api", "tiergate-replay"):
        pod = deployments[name]["spec"]["template"]["spec"]
        store = {v["name"]: v for v in pod["volumes"]}["store"]
        assert store["hostPath"] == {"path": "/var/lib/tiergate-store", "type": "DirectoryOrCreate"}
        assert "initContainers" not in pod
    assert not by_kind(docs, "PersistentVolumeClaim")
    operator = deployments["tiergate-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert "--prometheus-url=http://tiergate-prometheus:9090" in operator["args"]
    upstream = by_kind(docs, "Secret")["tiergate-upstream"]
    assert set(upstream["data"]) == {"system-id", "password"}


def test_postgresql_store_reads_the_dsn_from_the_secret_and_scales() -> None:
    docs = render(*VARIANTS["postgresql"])
    assert not by_kind(docs, "PersistentVolumeClaim")
    deployments = by_kind(docs, "Deployment")
    assert deployments["tiergate-api"]["spec"]["replicas"] == 3
    assert deployments["tiergate-replay"]["spec"]["replicas"] == 2
    for name in ("tiergate-api", "tiergate-replay"):
        spec = deployments[name]["spec"]
        assert "strategy" not in spec
        pod = spec["template"]["spec"]
        assert "store" not in {v["name"] for v in pod["volumes"]}
        ref = env_of(pod["containers"][0])["TIERGATE_STORE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "tiergate-db", "key": "dsn"}
    policy = by_kind(docs, "NetworkPolicy")["tiergate-api"]
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert 5432 in ports


def test_namespaced_install_has_no_cluster_role_and_a_role_per_watched_namespace() -> None:
    docs = render(*VARIANTS["namespaced"])
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    rules = operator_source("ClusterRole")
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "tiergate-operator"]
    assert {r["metadata"]["namespace"] for r in roles} == {"team-a", "team-b"}
    for role in roles:
        assert role["rules"] == rules
    bindings = [
        d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "tiergate-operator"
    ]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "tiergate-operator", "namespace": "tiergate-system"}
        ]
    assert {b["metadata"]["namespace"] for b in bindings} == {"team-a", "team-b"}
    operator = by_kind(docs, "Deployment")["tiergate-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert [a for a in operator["args"] if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    workers = [
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "tiergate-sender-workers"
    ]
    assert {w["metadata"]["namespace"] for w in workers} == {"team-a", "team-b"}


def test_namespaced_prometheus_discovers_pods_only_where_its_roles_reach() -> None:
    docs = render(*VARIANTS["namespaced"], "--set", "prometheus.enabled=true")
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "tiergate-prometheus-pod-sd"]
    assert {r["metadata"]["namespace"] for r in roles} == {"team-a", "team-b"}
    for role in roles:
        assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]
    pod = by_kind(docs, "Deployment")["tiergate-prometheus"]["spec"]["template"]["spec"]
    sd = next(c for c in pod["containers"] if c["name"] == "pod-sd")
    assert [a for a in sd["args"] if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]


def test_namespaced_install_without_namespaces_watches_the_release_namespace() -> None:
    docs = render("--set", "rbac.namespaced=true")
    assert not by_kind(docs, "ClusterRole")
    operator = by_kind(docs, "Deployment")["tiergate-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert "--namespace=tiergate-system" in operator["args"]


def test_operator_rules_are_those_of_deploy_operator_rbac() -> None:
    docs = render()
    assert by_kind(docs, "ClusterRole")["tiergate-operator"]["rules"] == operator_source("ClusterRole")
    assert by_kind(docs, "Role")["tiergate-operator-leader"]["rules"] == operator_source("Role")
    assert (CHART / "files" / "operator-rbac.yaml").resolve() == ROOT / "deploy" / "operator" / "rbac.yaml"


def test_crd_is_the_generated_file_not_a_copy() -> None:
    docs = render("--include-crds")
    (crd,) = by_kind(docs, "CustomResourceDefinition").values()
    assert crd == yaml.safe_load((ROOT / "crds" / "sendertier.yaml").read_text())
    assert (CHART / "crds" / "sendertier.yaml").is_symlink()


def test_monitoring_objects_need_the_prometheus_operator_api() -> None:
    on = ["--set", "monitoring.serviceMonitor.enabled=true,monitoring.prometheusRule.enabled=true"]
    absent = render(*on)
    assert not [d for d in absent if d["apiVersion"] == MONITORING_API]
    docs = render(*VARIANTS["monitoring"])
    monitors = by_kind(docs, "ServiceMonitor")
    assert set(monitors) == {"tiergate-operator", "tiergate-api", "tiergate-replay"}
    services = by_kind(docs, "Service")
    for monitor in monitors.values():
        selector = monitor["spec"]["selector"]["matchLabels"]
        (port,) = [e["port"] for e in monitor["spec"]["endpoints"]]
        matching = [s for s in services.values() if s["spec"]["selector"] == selector]
        assert matching and port in {p["name"] for p in matching[0]["spec"]["ports"]}
    (pods,) = by_kind(docs, "PodMonitor").values()
    assert pods["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/component": "sender-worker"}
    (rule,) = by_kind(docs, "PrometheusRule").values()
    (source,) = source_docs("deploy/prometheus/tiergate-alerts.yaml")
    assert rule["spec"]["groups"] == source["groups"]
    assert (CHART / "files" / "tiergate-alerts.yaml").is_symlink()


def test_network_policies_follow_who_talks_to_whom() -> None:
    docs = render(*VARIANTS["kind"])
    policies = by_kind(docs, "NetworkPolicy")
    for name in ("tiergate-api", "tiergate-replay", "tiergate-operator", "tiergate-sender-workers"):
        assert set(policies[name]["spec"]["policyTypes"]) == {"Ingress", "Egress"}, name
    (api_in,) = policies["tiergate-api"]["spec"]["ingress"]
    assert api_in["from"] == [{"namespaceSelector": {}}] and api_in["ports"][0]["port"] == 8080
    (replay_in,) = policies["tiergate-replay"]["spec"]["ingress"]
    assert replay_in["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"tiergate.io/on-call": "true"}}},
    ]
    operator_out = policies["tiergate-operator"]["spec"]["egress"]
    ports = {p["port"] for rule in operator_out for p in rule.get("ports", [])}
    assert {443, 6443, 9090, 53, 8090} <= ports
    assert any(
        peer.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/component": "sender-worker"}
        for rule in operator_out
        for peer in rule.get("to", [])
    )
    workers_out = policies["tiergate-sender-workers"]["spec"]["egress"]
    assert 2775 in {p["port"] for rule in workers_out for p in rule.get("ports", [])}
    assert not by_kind(render("--set", "networkPolicy.enabled=false"), "NetworkPolicy")
    elsewhere = render("--set", "workers.namespaces={sms}")
    (workers,) = [d for d in elsewhere if d["metadata"]["name"] == "tiergate-sender-workers"]
    assert workers["metadata"]["namespace"] == "sms"


def test_the_argo_cd_example_renders_with_managed_secrets_and_no_generated_tokens(tmp_path: Path) -> None:
    app = next(yaml.safe_load_all((ROOT / "examples" / "gitops" / "argocd-application.yaml").read_text()))
    values = tmp_path / "argocd-values.yaml"
    values.write_text(yaml.safe_dump(app["spec"]["source"]["helm"]["valuesObject"]))
    docs = render("-f", str(values), "--api-versions", "monitoring.coreos.com/v1")
    assert "PrometheusRule" in {d["kind"] for d in docs}
    # Tokens come from the Secrets the values name; the chart mints none that a sync would rotate.
    assert not [d for d in docs if d["kind"] == "Secret" and "token" in d["metadata"]["name"]]
    api = by_kind(docs, "Deployment")["tiergate-api"]["spec"]["template"]["spec"]
    refs = [
        e["valueFrom"]["secretKeyRef"]["name"]
        for c in api["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    refs += [v["secret"]["secretName"] for v in api.get("volumes", []) if "secret" in v]
    assert "tiergate-api-tokens" in refs


def test_api_processes_reach_the_container_as_its_setting() -> None:
    default = by_kind(render(), "Deployment")["tiergate-api"]["spec"]["template"]["spec"]
    assert env_of(default["containers"][0])["TIERGATE_API_PROCESSES"]["value"] == "1"
    two = by_kind(render("--set", "api.processes=2"), "Deployment")["tiergate-api"]
    assert env_of(two["spec"]["template"]["spec"]["containers"][0])["TIERGATE_API_PROCESSES"]["value"] == "2"


def test_connectors_render_as_a_workers_configmap_the_worker_parses(tmp_path: Path) -> None:
    values = tmp_path / "connectors.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "workers": {"namespaces": ["senders"]},
                "upstream": {
                    "connectors": [
                        {"name": "a", "url": "smpp://a:2775", "tps": 300, "binds": 2, "prefixes": ["+49"]},
                        {
                            "name": "b",
                            "url": "https://b/v1",
                            "failover": 1,
                            "passwordFrom": {"env": "B_TOKEN"},
                        },
                    ]
                },
            }
        )
    )
    assert "tiergate-connectors" not in by_kind(render(), "ConfigMap")
    config = by_kind(render("--values", str(values)), "ConfigMap")["tiergate-connectors"]
    assert config["metadata"]["namespace"] == "senders"
    spec = parse_upstream(config["data"]["connectors.yaml"])
    assert [(c.name, c.tps, c.binds, c.prefixes, c.failover) for c in spec.connectors] == [
        ("a", 300, 2, ("+49",), 0),
        ("b", None, 1, (), 1),
    ]


def test_webhook_secrets_reach_the_api_only_when_configured() -> None:
    def api_env(*args: str) -> dict[str, Any]:
        api = by_kind(render(*args), "Deployment")["tiergate-api"]
        return env_of(api["spec"]["template"]["spec"]["containers"][0])

    default = api_env()
    assert "TIERGATE_WEBHOOKS" not in default
    assert default["TIERGATE_RECEIPT_TIMEOUT"]["value"] == "72h"
    customers = '{"acme": {"url": "https://hooks.acme.example/sms", "secrets": ["0123456789abcdef0"]}}'
    docs = render("--set-json", f"api.webhooks.customers={customers}")
    secret = by_kind(docs, "Secret")["tiergate-api-webhooks"]
    config = yaml.safe_load(base64.b64decode(secret["data"]["webhooks.yaml"]))
    assert config == {"customers": yaml.safe_load(customers)}
    api = by_kind(docs, "Deployment")["tiergate-api"]["spec"]["template"]["spec"]["containers"][0]
    ref = env_of(api)["TIERGATE_WEBHOOKS"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "tiergate-api-webhooks", "key": "webhooks.yaml"}
    mine = api_env("--set", "api.webhooks.existingSecret=my-hooks")
    assert mine["TIERGATE_WEBHOOKS"]["valueFrom"]["secretKeyRef"]["name"] == "my-hooks"
    bad = helm(
        "template", "t", str(CHART), "--set-json", 'api.webhooks.customers={"a": {"secrets": ["short"]}}'
    )
    assert bad.returncode != 0


def test_overload_limits_reach_the_containers_as_their_settings() -> None:
    docs = by_kind(render(), "Deployment")
    api = env_of(docs["tiergate-api"]["spec"]["template"]["spec"]["containers"][0])
    assert (api["TIERGATE_CUSTOMER_RATE"]["value"], api["TIERGATE_MAX_QUEUE_DEPTH"]["value"]) == (
        "1000",
        "100000",
    )
    replay = env_of(docs["tiergate-replay"]["spec"]["template"]["spec"]["containers"][0])
    assert replay["TIERGATE_REPLAY_MAX_RATE"]["value"] == "200"
    off = by_kind(render("--set", "api.customerRate=0", "--set", "api.maxQueueDepth=0"), "Deployment")
    env = env_of(off["tiergate-api"]["spec"]["template"]["spec"]["containers"][0])
    assert (env["TIERGATE_CUSTOMER_RATE"]["value"], env["TIERGATE_MAX_QUEUE_DEPTH"]["value"]) == ("0", "0")


def test_notification_receivers_reach_the_operator_only_when_enabled() -> None:
    def operator_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
        op = by_kind(docs, "Deployment")["tiergate-operator"]
        return env_of(op["spec"]["template"]["spec"]["containers"][0])

    default = render()
    assert "TIERGATE_NOTIFICATIONS_SECRET" not in operator_env(default)
    assert "tiergate-notifications" not in by_kind(default, "Secret")
    receivers = (
        '[{"name": "oncall", "url": "https://hooks.example/tiergate", "secrets": ["0123456789abcdef0"]},'
        ' {"name": "chat", "url": "https://hooks.slack.example/x", "format": "slack", "kinds": ["Halted"]}]'
    )
    docs = render(
        "--set",
        "operator.notifications.enabled=true",
        "--set-json",
        f"operator.notifications.receivers={receivers}",
    )
    assert operator_env(docs)["TIERGATE_NOTIFICATIONS_SECRET"]["value"] == "tiergate-notifications"
    secret = by_kind(docs, "Secret")["tiergate-notifications"]
    parsed = parse_receivers(base64.b64decode(secret["data"][SECRET_KEY]).decode())
    assert [(r.name, r.format.value, len(r.kinds)) for r in parsed] == [
        ("oncall", "webhook", 8),
        ("chat", "slack", 1),
    ]
    # The leader Role (from deploy/operator/rbac.yaml) grants that one Secret and no other.
    leader = by_kind(docs, "Role")["tiergate-operator-leader"]["rules"]
    assert {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["tiergate-notifications"],
        "verbs": ["get"],
    } in leader
    yours = render("--set", "operator.notifications.enabled=true")
    assert "tiergate-notifications" not in by_kind(yours, "Secret")
    bad = helm(
        "template",
        "t",
        str(CHART),
        "--set-json",
        'operator.notifications.receivers=[{"name": "a", "url": "ftp://x"}]',
    )
    assert bad.returncode != 0
