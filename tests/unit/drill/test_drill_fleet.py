"""The fleets the drill builds: the same workers in both modes, gated only under tiergate."""

from __future__ import annotations

import pytest

from tiergate.api.v1alpha1 import SenderTier
from tiergate.domain.revision import revision_of
from tiergate.domain.workload import LABEL_REVISION
from tiergate.drill.cli import settings_for
from tiergate.drill.scenario import SHORT, bad_env, baseline_deployment, fleet_docs, with_env


def _env(container: dict[str, object]) -> dict[str, object]:
    return {e["name"]: e.get("value") for e in container["env"]}  # type: ignore[attr-defined,index]


@pytest.mark.parametrize("mode", ["baseline", "tiergate"])
def test_the_fleet_is_three_ordered_tiers_with_the_drill_gate(mode: str) -> None:
    settings = settings_for(False)
    docs = fleet_docs(settings, mode)
    assert [(d["metadata"]["name"], d["spec"]["order"], d["spec"]["trafficClass"]) for d in docs] == [
        ("bulk", 0, "bulk"),
        ("standard", 1, "standard"),
        ("priority", 2, "priority"),
    ]
    for doc in docs:
        SenderTier.model_validate(doc)  # a valid SenderTier
        gate = doc["spec"]["healthGate"]
        assert gate["progressDeadline"] == f"{settings.progress_deadline}s"
        assert [c["name"] for c in gate["checks"]] == ["deep-ready", "error-rate"]
        assert doc["spec"]["replay"] == {"auto": mode == "tiergate"}
        assert doc["spec"]["replicas"] == settings.replicas
        assert _env(doc["spec"]["template"]["spec"]["containers"][0])["TIERGATE_MAX_ATTEMPTS"] == "3"


def test_both_modes_run_the_same_worker_template() -> None:
    settings = settings_for(False)
    base = [d["spec"]["template"] for d in fleet_docs(settings, "baseline")]
    gated = [d["spec"]["template"] for d in fleet_docs(settings, "tiergate")]
    assert base == gated


@pytest.mark.parametrize(("scenario", "fault"), [("no-bind", "no-bind"), ("fail-share", "fail-submits=0.5")])
def test_the_bad_release_is_the_fault_switch(scenario: str, fault: str) -> None:
    assert bad_env(scenario, settings_for(False)) == {"TIERGATE_FAULTS": fault, "TIERGATE_ALLOW_FAULTS": "1"}


def test_the_baseline_deployment_is_2020_plain() -> None:
    doc = fleet_docs(settings_for(False), "baseline")[0]
    bad = with_env(doc["spec"]["template"], **bad_env("no-bind", settings_for(False)))
    dep = baseline_deployment(doc, "ns", bad)
    assert "ownerReferences" not in dep["metadata"]
    assert "strategy" not in dep["spec"]  # the default rolling update
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert dep["spec"]["template"]["metadata"]["labels"][LABEL_REVISION] == revision_of(bad)
    assert _env(container)["TIERGATE_FAULTS"] == "no-bind"
    assert _env(container)["TIERGATE_TIER"] == "bulk"


def test_short_settings_shorten_and_overrides_win() -> None:
    short = settings_for(True, rate=50.0, detection_delay=None)
    assert short.rate == 50.0
    assert short.detection_delay == SHORT["detection_delay"]
    assert short.max_queue_depth == int(short.queue_seconds * 50.0)
    assert settings_for(False).detection_delay == 120.0
