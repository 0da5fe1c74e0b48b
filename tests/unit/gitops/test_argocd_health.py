"""The Argo CD health check for SenderTier, run by a real Lua interpreter on real statuses.

Argo CD runs health checks in gopher-lua (Lua 5.1); lupa's Lua 5.1 runs the same file here. The
objects come from two places: statuses a real operator wrote on a real API server (captured by
``tests/fixtures/capture_sendertier_statuses.py``), and every phase the domain's state machine
produces today (``sendertier_cases``), so a change in the status shape breaks this test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.plugins.tools import require_module
from tests.unit.gitops.sendertier_cases import Case, cases

ROOT = Path(__file__).resolve().parents[3]
GITOPS = ROOT / "examples" / "gitops"
LUA = GITOPS / "argocd-health-sendertier.lua"
CAPTURED = ROOT / "tests" / "fixtures" / "sendertier-statuses.json"
ARGO_STATES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the health check on one object as Argo CD does: ``obj`` global, a table returned."""
    runtime = require_module("lupa.lua51").LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(_without_nulls(obj), recursive=True)
    result = runtime.execute(LUA.read_text())
    return str(result["status"]), str(result["message"])


def _without_nulls(value: Any) -> Any:
    """JSON as Argo CD hands it to Lua: a null field is an absent key."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_every_phase_the_domain_writes_maps_to_its_argo_state(case: Case) -> None:
    status, message = health(case.obj)
    assert status == case.argocd, message
    assert message


def test_a_halt_says_which_check_failed() -> None:
    halted = next(c for c in cases() if c.name == "rolled-back")
    status, message = health(halted.obj)
    assert status == "Degraded"
    assert "error-rate" in message and "0.05" in message


def captured() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(CAPTURED.read_text())
    return items


def expected_for_captured(obj: dict[str, Any]) -> str:
    """What a tier in this state means to Argo CD, from its status fields."""
    status = obj.get("status") or {}
    conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
    paused = obj["metadata"].get("annotations", {}).get("tiergate.io/paused") == "true"
    if not status.get("phase") or status.get("observedGeneration") != obj["metadata"]["generation"]:
        return "Progressing"
    if status["phase"] in ("Halted", "RolledBack"):
        return "Degraded"
    if status["phase"] == "SignedOff" and conds.get("Ready") == "True":
        return "Healthy"
    if paused:
        return "Suspended"
    return "Progressing"


def test_the_capture_covers_the_rollout_phases() -> None:
    phases = {(i["object"].get("status") or {}).get("phase") for i in captured()}
    assert {"Progressing", "Baking", "SignedOff", "RolledBack"} <= phases, phases


@pytest.mark.parametrize("item", captured(), ids=lambda i: i["shape"])
def test_statuses_a_real_operator_wrote(item: dict[str, Any]) -> None:
    status, message = health(item["object"])
    assert status in ARGO_STATES
    assert status == expected_for_captured(item["object"]), message


def test_the_argocd_cm_patch_embeds_this_exact_script() -> None:
    patch = yaml.safe_load((GITOPS / "argocd-cm-patch.yaml").read_text())
    assert patch["kind"] == "ConfigMap" and patch["metadata"]["name"] == "argocd-cm"
    embedded = patch["data"]["resource.customizations.health.tiergate.io_SenderTier"]
    assert embedded == LUA.read_text()


def test_the_application_deploys_the_chart_and_the_fleet() -> None:
    docs = [d for d in yaml.safe_load_all((GITOPS / "argocd-application.yaml").read_text()) if d]
    apps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Application"}
    paths = {
        s["path"] for app in apps.values() for s in app["spec"].get("sources", [app["spec"].get("source")])
    }
    assert "charts/tiergate" in paths
    assert "examples/gitops/kustomize/overlays/production" in paths
    for path in paths:
        assert (ROOT / path).is_dir(), path
