"""The minimal chart renders, and takes its CRD and operator rules from their one source."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tiergate.devcluster import build

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "tiergate"


def render(*args: str) -> list[dict[str, Any]]:
    """`helm template` of the chart (helm from the kind build group), as objects."""
    helm = build.bin_dir() / "helm"
    if not helm.is_file():
        pytest.skip("helm is not built: scripts/build-k8s.sh --group kind")
    done = subprocess.run(
        [str(helm), "template", "tiergate", str(CHART), "--namespace", "tiergate-system", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The rendered objects of one kind, by name."""
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_crd_is_the_generated_file_not_a_copy() -> None:
    docs = render("--include-crds")
    (crd,) = by_kind(docs, "CustomResourceDefinition").values()
    assert crd == yaml.safe_load((ROOT / "crds" / "sendertier.yaml").read_text())
    assert (CHART / "crds" / "sendertier.yaml").is_symlink()


def test_operator_rules_are_those_of_deploy_operator_rbac() -> None:
    source = [d for d in yaml.safe_load_all((ROOT / "deploy" / "operator" / "rbac.yaml").read_text()) if d]
    (expected,) = [d["rules"] for d in source if d["kind"] == "ClusterRole"]
    role = by_kind(render(), "ClusterRole")["tiergate-operator"]
    assert role["rules"] == expected


def test_default_install_runs_every_component_non_root_and_pulls_nothing_new() -> None:
    docs = render()
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"tiergate-operator", "tiergate-api", "tiergate-smsc", "tiergate-prometheus"}
    for dep in deployments.values():
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["imagePullPolicy"] in ("IfNotPresent", "Never"), c["name"]
    operator = deployments["tiergate-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert "--prometheus-url=http://tiergate-prometheus:9090" in operator["args"]
    prom = deployments["tiergate-prometheus"]["spec"]["template"]["spec"]
    assert [c["name"] for c in prom["containers"]] == ["prometheus", "pod-sd"]


def test_replay_service_is_optional() -> None:
    assert "tiergate-replay" not in by_kind(render(), "Deployment")
    assert "tiergate-replay" in by_kind(render("--set", "replay.enabled=true"), "Deployment")
