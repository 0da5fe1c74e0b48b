"""The operator's status is kstatus-compatible, so Flux, ``kubectl wait`` and Argo CD read it.

kstatus (sigs.k8s.io/cli-utils) computes a resource's state from ``status.observedGeneration``
and the abnormal-true conditions ``Reconciling`` and ``Stalled``; ``kubectl wait
--for=condition=Ready`` and Flux's health checks read ``Ready``. Table-driven over every phase the
domain's status builder produces (``sendertier_cases``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.unit.gitops.sendertier_cases import Case, cases

CAMEL = re.compile(r"^[A-Z][A-Za-z0-9]*$")
CAPTURED = Path(__file__).resolve().parents[2] / "fixtures" / "sendertier-statuses.json"


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus's generic computation: InProgress, Failed or Current."""
    status = obj.get("status")
    if not status:
        return "InProgress"
    generation = obj["metadata"].get("generation")
    if generation is not None and status.get("observedGeneration") != generation:
        return "InProgress"
    conds = {c["type"]: c for c in status.get("conditions", [])}
    if conds.get("Reconciling", {}).get("status") == "True":
        return "InProgress"
    if conds.get("Stalled", {}).get("status") == "True":
        return "Failed"
    return "Current"


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_kstatus_reads_each_phase_as_meant(case: Case) -> None:
    assert kstatus(case.obj) == case.kstatus


@pytest.mark.parametrize("case", [c for c in cases() if c.obj.get("status")], ids=lambda c: c.name)
def test_conditions_have_the_standard_shape(case: Case) -> None:
    status = case.obj["status"]
    conds = conditions(case.obj)
    assert {"Ready", "Reconciling", "Stalled"} <= conds.keys()
    for c in conds.values():
        assert c["status"] in ("True", "False", "Unknown")
        assert CAMEL.match(c["reason"]), c
        assert c["observedGeneration"] == status["observedGeneration"], c
        datetime.fromisoformat(c["lastTransitionTime"].replace("Z", "+00:00"))
    assert not (conds["Reconciling"]["status"] == "True" and conds["Stalled"]["status"] == "True")


@pytest.mark.parametrize(
    "case",
    [c for c in cases() if c.name != "signed-off-spec-changed" and c.obj.get("status")],
    ids=lambda c: c.name,
)
def test_status_is_written_for_the_generation_it_describes(case: Case) -> None:
    assert case.obj["status"]["observedGeneration"] == case.obj["metadata"]["generation"]


@pytest.mark.parametrize("case", [c for c in cases() if c.obj.get("status")], ids=lambda c: c.name)
def test_ready_is_true_exactly_when_kstatus_says_current(case: Case) -> None:
    # `kubectl wait --for=condition=Ready` must return for the same objects kstatus calls Current,
    # and a halted tier must never look Ready to a GitOps tool.
    ready = conditions(case.obj)["Ready"]["status"] == "True"
    behind = case.obj["status"]["observedGeneration"] != case.obj["metadata"]["generation"]
    assert (ready and not behind) == (kstatus(case.obj) == "Current")


def test_the_table_covers_every_kstatus_state() -> None:
    assert {c.kstatus for c in cases()} == {"InProgress", "Failed", "Current"}


def captured() -> list[dict[str, Any]]:
    """SenderTiers a real operator wrote (tests/fixtures/capture_sendertier_statuses.py)."""
    items = json.loads(CAPTURED.read_text())
    return [i["object"] for i in items if (i["object"].get("status") or {}).get("phase")]


@pytest.mark.parametrize("obj", captured(), ids=lambda o: f"{o['status']['phase']}-{o['metadata']['name']}")
def test_statuses_a_real_operator_wrote_are_kstatus_compatible(obj: dict[str, Any]) -> None:
    status = obj["status"]
    conds = conditions(obj)
    assert {"Ready", "Reconciling", "Stalled"} <= conds.keys()
    for c in conds.values():
        assert c["observedGeneration"] == status["observedGeneration"], c
        assert CAMEL.match(c["reason"]), c
    behind = status["observedGeneration"] != obj["metadata"]["generation"]
    if behind:
        expected = "InProgress"
    elif status["phase"] in ("Halted", "RolledBack"):
        expected = "Failed"
    elif status["phase"] == "SignedOff" and conds["Ready"]["status"] == "True":
        expected = "Current"
    else:
        expected = "InProgress"
    assert kstatus(obj) == expected
