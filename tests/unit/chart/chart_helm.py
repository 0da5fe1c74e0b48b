"""Running helm on charts/tiergate for the chart tests, and reading what it rendered.

helm is the binary `scripts/setup.sh` builds from the Go module proxy into the control plane's
cache (`tiergate dev build --group test`); without it the tests follow the missing-tool rule of
tests/plugins/tools.py (skip naming that command, fail under CI).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from tests.plugins.tools import SETUP, require_tool

from tiergate_kits.devcluster import build

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "tiergate"
KIND_VALUES = CHART / "ci" / "kind-values.yaml"
MONITORING_API = "monitoring.coreos.com/v1"

# The variants every structural test runs on: name -> helm arguments.
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "kind": ["--values", str(KIND_VALUES)],
    "postgresql": [
        "--set",
        "store.engine=postgresql,store.postgresql.existingSecret=tiergate-db",
        "--set",
        "api.replicas=3,replay.replicas=2",
    ],
    "namespaced": ["--set", "rbac.namespaced=true", "--set", "operator.watchNamespaces={team-a,team-b}"],
    "monitoring": [
        "--set",
        "monitoring.serviceMonitor.enabled=true,monitoring.prometheusRule.enabled=true",
        "--api-versions",
        MONITORING_API,
    ],
}


def helm_path() -> Path:
    """The cached helm binary (or the missing-tool rule)."""
    return Path(
        require_tool("helm", f"{SETUP} (tiergate dev build --group test)", path=build.bin_dir() / "helm")
    )


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run helm with the given arguments (never raises on failure)."""
    env_args = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
    return subprocess.run(
        [str(helm_path()), *args, *env_args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def render(*args: str, namespace: str = "tiergate-system", release: str = "tiergate") -> list[dict[str, Any]]:
    """`helm template` of the chart, as objects; the render must succeed."""
    done = helm("template", release, str(CHART), "--namespace", namespace, *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The rendered objects of one kind, by name (namespace/name when not unique)."""
    out: dict[str, dict[str, Any]] = {}
    for d in docs:
        if d["kind"] != kind:
            continue
        name = d["metadata"]["name"]
        if name in out:
            name = f"{d['metadata'].get('namespace')}/{name}"
        out[name] = d
    return out


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each workload's pod spec, by workload name."""
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def source_docs(relative: str) -> list[dict[str, Any]]:
    """The YAML documents of a file of the repository."""
    return [d for d in yaml.safe_load_all((ROOT / relative).read_text()) if d]
