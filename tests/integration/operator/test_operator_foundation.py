"""The foundation against a real API server: Deployments per tier, Ready from real workers, schema
validation, garbage collection, restarts, and least-privilege RBAC."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.plugins.operator import (
    OPERATOR_NS,
    OPERATOR_SA,
    OperatorProcess,
    all_signed_off,
    create_tiers,
    example_fleet,
    get_tier,
    kubectl,
    patch_tier,
    release,
    tier_ready,
    wait_for,
)

from tiergate.api.v1alpha1 import GROUP, PLURAL, VERSION
from tiergate.domain.revision import revision_of

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TIERS = ("bulk", "standard", "priority")


def _deployment(kube_api: client.ApiClient, namespace: str, name: str) -> Any:
    try:
        return client.AppsV1Api(kube_api).read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _all_ready(kube_api: client.ApiClient, namespace: str) -> bool:
    return all(tier_ready(kube_api, namespace, t) for t in TIERS)


@pytest.mark.usefixtures("sender_env")
def test_example_fleet_runs_real_workers_and_reports_ready(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess, kubeconfig_path: Path
) -> None:
    docs = example_fleet()
    create_tiers(kube_api, namespace, docs)
    wait_for(lambda: _all_ready(kube_api, namespace), timeout=180, what="every tier Ready")

    core = client.CoreV1Api(kube_api)
    for doc in docs:
        name = doc["metadata"]["name"]
        rev = revision_of(doc["spec"]["template"])
        dep = _deployment(kube_api, namespace, name)
        assert dep is not None
        owner = dep.metadata.owner_references[0]
        assert (owner.kind, owner.name, owner.controller) == ("SenderTier", name, True)
        labels = dep.spec.template.metadata.labels
        assert labels["tiergate.io/revision"] == rev and labels["tiergate.io/fleet"] == "sms-senders"
        container = dep.spec.template.spec.containers[0]
        assert container.command == ["tiergate", "sender", "worker"]
        env = {e.name: e.value for e in container.env}
        assert env["TIERGATE_REVISION"] == rev and env["TIERGATE_TRAFFIC_CLASS"] == name
        assert dep.spec.replicas == doc["spec"]["replicas"]
        status = get_tier(kube_api, namespace, name)["status"]
        assert status["revision"] == rev and status["phase"] == "SignedOff"
        # The pods are Ready because a real worker process answers /readyz on the pod's IP.
        pods = core.list_namespaced_pod(namespace, label_selector=f"tiergate.io/tier={name}").items
        assert len(pods) == doc["spec"]["replicas"]
        for pod in pods:
            answer = httpx.get(f"http://{pod.status.pod_ip}:8080/readyz", timeout=5)
            assert answer.status_code == 200, answer.text
            metrics = httpx.get(f"http://{pod.status.pod_ip}:8080/metrics", timeout=5).text
            assert f'revision="{rev}"' in metrics
    # kstatus-style readiness is what `kubectl wait` understands.
    done = kubectl(
        kubeconfig_path, "-n", namespace, "wait", "--for=condition=Ready", "sendertier/bulk", "--timeout=10s"
    )
    assert "condition met" in done.stdout
    table = kubectl(kubeconfig_path, "-n", namespace, "get", "st").stdout
    assert "SignedOff" in table and "sms-senders" in table


INVALID: list[tuple[str, Any, str]] = [
    ("missing fleet", lambda s: s.pop("fleet"), "spec.fleet"),
    ("negative replicas", lambda s: s.update(replicas=-1), "spec.replicas"),
    (
        "bake shorter than interval",
        lambda s: s["healthGate"].update(bake="5s", interval="10s"),
        "bake must be at least one interval",
    ),
    (
        "duplicate check names",
        lambda s: s["healthGate"].update(
            checks=[{"name": "a", "http": {"port": 80}}, {"name": "a", "http": {"port": 81}}]
        ),
        "check names must be unique",
    ),
    ("unknown onFailure", lambda s: s.update(onFailure="Explode"), "spec.onFailure"),
    ("bad duration", lambda s: s["healthGate"].update(bake="2 minutes"), "spec.healthGate.bake"),
    ("negative order", lambda s: s.update(order=-3), "spec.order"),
    ("fleet not a DNS label", lambda s: s.update(fleet="SMS_Senders"), "spec.fleet"),
    (
        "check with two kinds",
        lambda s: s["healthGate"].update(
            checks=[{"name": "x", "http": {"port": 80}, "discardBudget": {"max": 1}}]
        ),
        "set exactly one of",
    ),
    (
        "prometheus check without bounds",
        lambda s: s["healthGate"].update(checks=[{"name": "p", "prometheus": {"query": "up"}}]),
        "needs max, min or both",
    ),
    ("no containers", lambda s: s["template"]["spec"].update(containers=[]), "spec.template.spec.containers"),
    ("failureLimit zero", lambda s: s["healthGate"].update(failureLimit=0), "spec.healthGate.failureLimit"),
    (
        "http port out of range",
        lambda s: s["healthGate"].update(checks=[{"name": "h", "http": {"port": 70000}}]),
        "port",
    ),
    ("no check", lambda s: s["healthGate"].update(checks=[]), "set readinessOnly: true"),
    ("no health gate", lambda s: s.pop("healthGate"), "spec.healthGate"),
    ("bad watch", lambda s: s["healthGate"].update(watch="forever"), "spec.healthGate.watch"),
    ("unknown onFleetHalt", lambda s: s.update(onFleetHalt="Panic"), "spec.onFleetHalt"),
    (
        "canary with replicas and percent",
        lambda s: s["healthGate"].update(canary={"replicas": 1, "percent": 25}),
        "set exactly one of canary.replicas (a pod count) or canary.percent",
    ),
    (
        "canary with neither",
        lambda s: s["healthGate"].update(canary={"bake": "60s"}),
        "set exactly one of canary",
    ),
    (
        "canary of every pod",
        lambda s: s["healthGate"].update(canary={"percent": 100}),
        "spec.healthGate.canary",
    ),
    ("canary of no pod", lambda s: s["healthGate"].update(canary={"replicas": 0}), "spec.healthGate.canary"),
]


@pytest.mark.parametrize(("case", "mutate", "needle"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_sendertiers_are_refused_with_a_readable_message(
    crd: None, kube_api: client.ApiClient, namespace: str, case: str, mutate: Any, needle: str
) -> None:
    doc = copy.deepcopy(example_fleet()[0])
    mutate(doc["spec"])
    with pytest.raises(ApiException) as refused:
        create_tiers(kube_api, namespace, [doc])
    assert refused.value.status == 422, refused.value.body
    message = json.loads(refused.value.body)["message"]
    assert needle in message, f"{case}: {message}"


@pytest.mark.usefixtures("sender_env")
def test_deleting_a_tier_garbage_collects_its_deployment_and_pods(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    doc = example_fleet()[0]
    create_tiers(kube_api, namespace, [doc])
    wait_for(lambda: tier_ready(kube_api, namespace, "bulk"), timeout=120, what="bulk Ready")
    client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "bulk"
    )
    wait_for(
        lambda: _deployment(kube_api, namespace, "bulk") is None, timeout=60, what="Deployment collected"
    )
    core = client.CoreV1Api(kube_api)
    wait_for(
        lambda: not core.list_namespaced_pod(namespace, label_selector="tiergate.io/tier=bulk").items,
        timeout=60,
        what="pods gone",
    )


@pytest.mark.usefixtures("sender_env")
def test_restart_changes_nothing_right_and_catches_up_on_what_changed(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    create_tiers(kube_api, namespace, example_fleet())
    wait_for(lambda: _all_ready(kube_api, namespace), timeout=180, what="every tier Ready")
    before = {t: _deployment(kube_api, namespace, t).metadata.resource_version for t in TIERS}
    status_before = {t: get_tier(kube_api, namespace, t)["status"] for t in TIERS}

    operator.kill()
    operator.start()
    time.sleep(8)
    after = {t: _deployment(kube_api, namespace, t).metadata.resource_version for t in TIERS}
    assert after == before, "a restarted operator rewrote Deployments that were already right"
    status_after = {t: get_tier(kube_api, namespace, t)["status"] for t in TIERS}
    assert status_after == status_before, "a restarted operator rewrote status that was already right"

    operator.kill()
    patch_tier(kube_api, namespace, "priority", {"spec": {"replicas": 3}})
    operator.start()
    wait_for(
        lambda: (
            _deployment(kube_api, namespace, "priority").spec.replicas == 3
            and tier_ready(kube_api, namespace, "priority")
        ),
        timeout=90,
        what="the change made while the operator was down",
    )


def _target_missing(kube_api: client.ApiClient, namespace: str, tier: str) -> dict[str, Any] | None:
    conditions = (get_tier(kube_api, namespace, tier).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "RollbackTargetMissing"), None)


def _target_missing_events(kube_api: client.ApiClient, namespace: str, tier: str) -> list[str]:
    events = client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
    return [
        e.message for e in events if e.involved_object.name == tier and e.reason == "RollbackTargetMissing"
    ]


@pytest.mark.usefixtures("sender_env")
def test_a_lost_rollback_target_is_a_condition_set_once_and_cleared_when_it_resolves(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    docs = example_fleet()
    by_name = {d["metadata"]["name"]: d for d in docs}
    create_tiers(kube_api, namespace, docs)
    first = {d["metadata"]["name"]: revision_of(d["spec"]["template"]) for d in docs}
    wait_for(
        lambda: all_signed_off(kube_api, namespace, first), timeout=180, what="first revision signed off"
    )
    # priority's signed-off template is lost: its ControllerRevision deleted, and with a restart
    # the operator's memory of it.
    operator.kill()
    client.AppsV1Api(kube_api).delete_namespaced_controller_revision(
        f"priority-{first['priority']}", namespace
    )
    operator.start()
    # A release for priority alone: it waits for bulk, holding the template it no longer has.
    new = release(kube_api, namespace, [by_name["priority"]], RELEASE="p1")["priority"]
    condition = wait_for(
        lambda: _target_missing(kube_api, namespace, "priority"), timeout=60, what="RollbackTargetMissing"
    )
    assert condition["status"] == "True" and first["priority"] in condition["message"], condition
    for poke in range(3):  # more reconciles of the stuck tier
        patch_tier(kube_api, namespace, "priority", {"metadata": {"labels": {"poke": str(poke)}}})
        time.sleep(2)
    assert _target_missing(kube_api, namespace, "priority") == condition
    assert len(_target_missing_events(kube_api, namespace, "priority")) == 1

    # The release reaches the lower tiers; priority then holds its spec's template and the
    # condition goes.
    lower = release(kube_api, namespace, [by_name["bulk"], by_name["standard"]], RELEASE="p1")
    wait_for(
        lambda: all_signed_off(kube_api, namespace, {**lower, "priority": new}),
        timeout=180,
        what="the release signed off everywhere",
    )
    assert _target_missing(kube_api, namespace, "priority") is None
    assert len(_target_missing_events(kube_api, namespace, "priority")) == 1


def test_operator_account_can_do_what_it_needs_and_nothing_more(
    kube_api: client.ApiClient, operator_kubeconfig: Path
) -> None:
    authz = client.AuthorizationV1Api(kube_api)
    user = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"

    def can(
        verb: str,
        resource: str,
        group: str = "",
        ns: str | None = "default",
        sub: str | None = None,
        name: str | None = None,
    ) -> bool:
        review = authz.create_subject_access_review(
            {
                "spec": {
                    "user": user,
                    "groups": [
                        "system:serviceaccounts",
                        f"system:serviceaccounts:{OPERATOR_NS}",
                        "system:authenticated",
                    ],
                    "resourceAttributes": {
                        "verb": verb,
                        "resource": resource,
                        "group": group,
                        "namespace": ns,
                        "subresource": sub,
                        "name": name,
                    },
                }
            }
        )
        return bool(review.status.allowed)

    needed = [
        ("watch", "sendertiers", "tiergate.io", "default", None),
        ("patch", "sendertiers", "tiergate.io", "default", "status"),
        ("create", "deployments", "apps", "default", None),
        ("patch", "deployments", "apps", "default", None),
        ("create", "controllerrevisions", "apps", "default", None),
        ("list", "pods", "", "default", None),
        ("create", "events", "", "default", None),
        ("update", "leases", "coordination.k8s.io", OPERATOR_NS, None),
        ("get", "secrets", "", OPERATOR_NS, None, "tiergate-notifications"),
    ]
    forbidden = [
        ("get", "secrets", "", OPERATOR_NS, None, "tiergate-api-tokens"),
        ("list", "secrets", "", OPERATOR_NS, None),
        ("update", "sendertiers", "tiergate.io", "default", None),
        ("delete", "sendertiers", "tiergate.io", "default", None),
        ("delete", "deployments", "apps", "default", None),
        ("get", "secrets", "", "default", None),
        ("list", "secrets", "", None, None),
        ("create", "pods", "", "default", None),
        ("delete", "pods", "", "default", None),
        ("update", "leases", "coordination.k8s.io", "default", None),
        ("create", "clusterrolebindings", "rbac.authorization.k8s.io", None, None),
        ("escalate", "clusterroles", "rbac.authorization.k8s.io", None, None),
    ]
    assert [n for n in needed if not can(*n)] == []
    assert [f for f in forbidden if can(*f)] == []


@pytest.mark.usefixtures("sender_env")
def test_two_operator_replicas_never_both_act_and_the_standby_takes_over(
    kube_api: client.ApiClient, namespace: str, operator_factory: Any
) -> None:
    first = operator_factory(replica="a").start()
    wait_for(lambda: "Acquired leadership" in first.logs(), timeout=60, what="first replica leads")
    second = operator_factory(replica="b").start()
    wait_for(
        lambda: "Standing by for leadership" in second.logs(), timeout=60, what="second replica stands by"
    )
    create_tiers(kube_api, namespace, example_fleet()[:1])
    wait_for(lambda: tier_ready(kube_api, namespace, "bulk"), timeout=120, what="bulk Ready")
    assert "Tier phase changed" in first.logs()
    assert "Tier phase changed" not in second.logs(), "the standby acted"

    first.kill()
    wait_for(lambda: "Acquired leadership" in second.logs(), timeout=60, what="standby takes over")
    patch_tier(kube_api, namespace, "bulk", {"spec": {"replicas": 1}})
    wait_for(
        lambda: (
            _deployment(kube_api, namespace, "bulk").spec.replicas == 1
            and tier_ready(kube_api, namespace, "bulk")
        ),
        timeout=90,
        what="the new leader reconciles",
    )
