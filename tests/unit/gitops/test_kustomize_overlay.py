"""The example kustomize overlay renders the example fleet for production, and the API server takes it.

The overlay must change what a release changes (the workers' image, hence each tier's revision)
and keep everything else of the base; the rendered SenderTiers must pass the CRD's schema, proven
by a server-side dry-run apply on a real API server.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tiergate.api.v1alpha1 import GROUP, PLURAL, VERSION, SenderTier
from tiergate.domain.revision import revision_of

ROOT = Path(__file__).resolve().parents[3]
KUSTOMIZE = ROOT / "examples" / "gitops" / "kustomize"
FLEET = ROOT / "examples" / "fleet" / "sendertiers.yaml"
IMAGE = "registry.example.com/tiergate:1.4.2"


def kubectl_binary() -> str:
    """kubectl from the local control plane's cache (kustomize is built in), or skip."""
    from tests.plugins.operator import kubectl_path

    return kubectl_path()


def render(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of one directory, as documents."""
    done = subprocess.run(
        [kubectl_binary(), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_name(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs}


def test_the_base_is_the_example_fleet_unchanged() -> None:
    fleet = by_name([d for d in yaml.safe_load_all(FLEET.read_text()) if d])
    assert by_name(render(KUSTOMIZE / "base")) == fleet


def test_production_changes_the_image_and_so_every_revision() -> None:
    base = by_name(render(KUSTOMIZE / "base"))
    prod = by_name(render(KUSTOMIZE / "overlays" / "production"))
    assert prod.keys() == base.keys() == {"bulk", "standard", "priority"}
    for name, doc in prod.items():
        tier = SenderTier.model_validate({**doc, "metadata": {"name": name, "namespace": "sms"}})
        assert doc["metadata"]["namespace"] == "sms"
        assert tier.spec.template.spec.containers[0]["image"] == IMAGE
        assert revision_of(doc["spec"]["template"]) != revision_of(base[name]["spec"]["template"])
        assert doc["spec"]["order"] == base[name]["spec"]["order"]
        assert doc["spec"]["healthGate"]["checks"] == base[name]["spec"]["healthGate"]["checks"]
    assert prod["priority"]["spec"]["replicas"] == 4


def dry_run(kubeconfig: Path, docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """Server-side apply with ``--dry-run=server``: the API server validates, stores nothing."""
    return subprocess.run(
        [
            kubectl_binary(),
            f"--kubeconfig={kubeconfig}",
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=argocd-controller",
            "-f",
            "-",
        ],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.cluster
def test_the_rendered_fleet_passes_the_crd_on_a_real_api_server(
    crd: None, kubeconfig_path: Path, kube_api: client.ApiClient, namespace: str
) -> None:
    docs = render(KUSTOMIZE / "overlays" / "production")
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    done = dry_run(kubeconfig_path, docs)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("serverside-applied (server dry run)") == len(docs), done.stdout
    stored = client.CustomObjectsApi(kube_api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )
    assert stored["items"] == []

    broken = copy.deepcopy(docs)
    broken[0]["spec"]["replicas"] = -1
    broken[1]["spec"]["healthGate"]["bake"] = "ten minutes"
    refused = dry_run(kubeconfig_path, broken)
    assert refused.returncode != 0
    assert "spec.replicas" in refused.stderr and "spec.healthGate.bake" in refused.stderr, refused.stderr
