"""The shortened incident drill, end to end, and its safety properties.

It runs `tiergate drill --short` in process: its own local control plane, the test SMSC,
Prometheus, the sender API, the replay service and the operator; the two bad releases that
fail at start (`--short`'s default: the late failure would lengthen it by minutes and is left
to the full drill), each against plain Deployments, against one Argo Rollout per tier (its
controller from `tiergate dev build --group argo`) and against tiergate. The test asserts what
must hold whatever the machine's speed: nothing accepted is lost in any mode, the Argo Rollouts
run completed (every tier back on the good release, both releases aborted by its own
canary checks, not rolled back by hand), and with tiergate nothing is rejected,
the bad release never gets past the first tier, and every discard of the bad release is
replayed and delivered exactly once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.plugins.prometheus import prometheus_binary
from tests.plugins.tools import SETUP, missing_tool

from tiergate_kits.devcluster import build
from tiergate_kits.drill.argo import MODE as ARGO
from tiergate_kits.drill.cli import run_drill, settings_for
from tiergate_kits.drill.scenario import MODES, SHORT_SCENARIOS

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def drill_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The report of one short drill over every scenario and mode."""
    if build.missing_binaries():
        missing_tool(f"control plane binaries {build.missing_binaries()}", f"{SETUP} (tiergate dev build)")
    if build.missing_binaries(group="argo"):
        missing_tool("the Argo Rollouts controller", f"{SETUP} (tiergate dev build --group argo)")
    prometheus_binary()
    out = tmp_path_factory.mktemp("drill")
    table = run_drill(list(SHORT_SCENARIOS), list(MODES), settings_for(True), out, "tiergate drill --short")
    assert "| Measure |" in table
    assert (out / "timeline.png").stat().st_size > 10_000
    assert (out / "report.md").read_text().count("| ") > 20
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def run_of(report: dict[str, Any], scenario: str, mode: str) -> dict[str, Any]:
    """One run's numbers."""
    found = [r for r in report["runs"] if r["scenario"] == scenario and r["mode"] == mode]
    assert len(found) == 1, [(r["scenario"], r["mode"]) for r in report["runs"]]
    return found[0]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scenario", SHORT_SCENARIOS)
def test_nothing_accepted_is_lost(drill_report: dict[str, Any], scenario: str, mode: str) -> None:
    run = run_of(drill_report, scenario, mode)
    assert run["accepted"] > 0
    assert run["lost"] == 0, run


@pytest.mark.parametrize("scenario", SHORT_SCENARIOS)
def test_tiergate_rejects_nothing(drill_report: dict[str, Any], scenario: str) -> None:
    run = run_of(drill_report, scenario, "tiergate")
    assert run["rejected"] == 0
    assert run["connection_errors"] == 0


@pytest.mark.parametrize("scenario", SHORT_SCENARIOS)
def test_tiergate_keeps_the_bad_release_in_the_first_tier(
    drill_report: dict[str, Any], scenario: str
) -> None:
    run = run_of(drill_report, scenario, "tiergate")
    assert run["bad_beyond_first_tier"] == []
    assert run["time_to_halt_s"] is not None
    assert run["time_to_recover_s"] is not None
    # The check is able to fail: in the baseline the same release reached every tier.
    assert run_of(drill_report, scenario, "baseline")["bad_beyond_first_tier"] == ["priority", "standard"]


@pytest.mark.parametrize("scenario", SHORT_SCENARIOS)
def test_tiergate_replays_every_discard_once_without_a_person(
    drill_report: dict[str, Any], scenario: str
) -> None:
    run = run_of(drill_report, scenario, "tiergate")
    assert run["replay_complete"], run
    assert run["discards_replayed"] == run["discards_bad"]
    assert run["discards_replayed_delivered"] == run["discards_bad"]
    assert run["smsc_duplicates"] == 0
    assert run["human_actions"] == 0


@pytest.mark.parametrize("scenario", SHORT_SCENARIOS)
def test_the_argo_rollouts_run_completed(drill_report: dict[str, Any], scenario: str) -> None:
    run = run_of(drill_report, scenario, ARGO)
    assert run["accepted"] > 0
    assert run["time_to_detect_s"] is not None, run
    assert run["time_to_recover_s"] is not None, run
    # Its canary is per tier, not per fleet: the one release reached every tier's canary.
    assert run["bad_beyond_first_tier"] == ["priority", "standard"]
    # Both releases fail at start, so its own canary checks abort them: no rollback by hand.
    assert not [a for a in run["human_action_list"] if "rollback" in a], run["human_action_list"]


def test_the_fail_share_release_is_caught_and_its_discards_replayed(drill_report: dict[str, Any]) -> None:
    run = run_of(drill_report, "fail-share", "tiergate")
    assert run["handled_by_bad"] > 0, "the bad release never handled traffic: nothing was tested"
    assert run["discards_bad"] > 0, "no discards to replay: raise the fail share or the rate"
