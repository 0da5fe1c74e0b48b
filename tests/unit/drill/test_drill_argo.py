"""The Argo Rollouts contender: the same workers and probe, the same error-ratio question, its own canary."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tiergate.domain.revision import revision_of
from tiergate.domain.workload import LABEL_REVISION, LABEL_TIER
from tiergate_kits.devcluster import build
from tiergate_kits.drill import argo
from tiergate_kits.drill.cli import settings_for
from tiergate_kits.drill.scenario import MODES, bad_env, baseline_deployment, fleet_docs
from tiergate_kits.helpers import with_env


def test_argo_rollouts_is_the_third_contender() -> None:
    assert MODES == ("baseline", "tiergate", "argo-rollouts")


@pytest.mark.parametrize("short", [False, True])
def test_each_tier_is_a_rollout_with_tiergates_pods_and_a_one_pod_canary(short: bool) -> None:
    settings = settings_for(short)
    for doc in fleet_docs(settings, argo.MODE):
        body = argo.rollout(doc, "ns", doc["spec"]["template"], settings)
        spec = body["spec"]
        assert body["kind"] == "Rollout" and body["metadata"]["name"] == doc["metadata"]["name"]
        assert spec["replicas"] == settings.replicas
        container = spec["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # the deep probe, kept
        assert spec["template"]["metadata"]["labels"][LABEL_REVISION] == revision_of(doc["spec"]["template"])
        assert spec["progressDeadlineSeconds"] == settings.progress_deadline
        assert spec["progressDeadlineAbort"] is True
        steps = spec["strategy"]["canary"]["steps"]
        weight = steps[0]["setWeight"]
        # Basic canary: ceil(weight * replicas / 100) canary pods, i.e. one.
        assert -(-weight * settings.replicas // 100) == 1
        assert steps[1] == {"pause": {"duration": f"{settings.bake}s"}}
        analysis = steps[2]["analysis"]
        assert analysis["templates"] == [{"templateName": argo.TEMPLATE}]
        assert {a["name"]: a["value"] for a in analysis["args"]} == {
            "tier": doc["metadata"]["name"],
            "revision": revision_of(doc["spec"]["template"]),
        }


def test_the_rollout_selects_the_same_pods_as_the_baseline_deployment() -> None:
    settings = settings_for(False)
    doc = fleet_docs(settings, argo.MODE)[0]
    dep = baseline_deployment(doc, "ns", doc["spec"]["template"])
    body = argo.rollout(doc, "ns", doc["spec"]["template"], settings)
    assert body["spec"]["selector"] == dep["spec"]["selector"]
    assert body["spec"]["template"]["metadata"]["labels"] == dep["spec"]["template"]["metadata"]["labels"]


def test_the_analysis_asks_tiergates_error_ratio_with_its_threshold_and_limits() -> None:
    settings = settings_for(False)
    gate = fleet_docs(settings, "tiergate")[0]["spec"]["healthGate"]
    check = next(c["prometheus"] for c in gate["checks"] if c["name"] == "error-rate")
    template = argo.analysis_template(settings, "http://127.0.0.1:9090")
    metric = template["spec"]["metrics"][0]
    query = metric["provider"]["prometheus"]["query"]
    ours = check["query"].replace("{tier}", "{{args.tier}}").replace("{revision}", "{{args.revision}}")
    evidence = check["minEvidence"]["query"].replace("{tier}", "{{args.tier}}")
    evidence = evidence.replace("{revision}", "{{args.revision}}")
    assert query == f"({ours}) and on() ({evidence} >= {check['minEvidence']['min']})"
    assert metric["successCondition"] == f"len(result) > 0 && result[0] <= {check['max']}"
    assert metric["failureLimit"] == gate["failureLimit"]
    assert metric["interval"] == gate["interval"]
    assert metric["count"] > metric["failureLimit"]
    assert metric["provider"]["prometheus"]["address"] == "http://127.0.0.1:9090"


def _pod(tier: str, revision: str, ready: bool, created: int) -> SimpleNamespace:
    return SimpleNamespace(
        metadata=SimpleNamespace(
            labels={LABEL_TIER: tier, LABEL_REVISION: revision}, creation_timestamp=created
        ),
        status=SimpleNamespace(
            conditions=[SimpleNamespace(type="Ready", status="True" if ready else "False")]
        ),
    )


def test_a_release_rewrites_the_analysis_argument_with_the_template_it_names() -> None:
    settings = settings_for(False)
    doc = fleet_docs(settings, argo.MODE)[0]
    bad = with_env(doc["spec"]["template"], **bad_env("fail-share", settings))
    patch = argo.sync_patch(doc, "ns", bad, settings)
    analysis = patch["spec"]["strategy"]["canary"]["steps"][2]["analysis"]
    args = {a["name"]: a["value"] for a in analysis["args"]}
    assert args["revision"] == revision_of(bad) != revision_of(doc["spec"]["template"])
    assert patch["spec"]["template"]["metadata"]["labels"][LABEL_REVISION] == revision_of(bad)


def test_pod_workloads_names_the_revision_of_the_newest_pod_and_its_ready_pods() -> None:
    pods = [
        _pod("bulk", "good", True, 1),
        _pod("bulk", "good", True, 2),
        _pod("bulk", "bad", False, 3),  # the canary that never becomes Ready
        _pod("priority", "good", True, 1),
    ]
    assert argo.pod_workloads(pods, 2) == {"bulk": ("bad", 2, 0), "priority": ("good", 2, 1)}


def test_the_argo_group_builds_the_pinned_controller() -> None:
    v = build.load_versions()
    assert v.argo_rollouts.startswith("v1.10.")
    (tool,) = build.group_tools(v, "argo")
    assert tool.name == "argo-rollouts" and tool.version == v.argo_rollouts
    assert tool.package == "github.com/argoproj/argo-rollouts/cmd/rollouts-controller"
    assert "utils/version.version=" + v.argo_rollouts.removeprefix("v") in tool.ldflags
    with pytest.raises(RuntimeError, match="argo_rollouts"):
        build.argo_tools(build.Versions(kubernetes="v1.35.8", etcd="v3.6.16", kwok="v0.8.0"))
