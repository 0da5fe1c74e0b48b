"""The shipped alert rules, runbook and Grafana dashboard agree with each other and with the code.

``promtool`` (Debian's prometheus package) checks the rules and runs unit tests of the new alerts;
the real-Prometheus test in ``tests/integration/monitoring`` runs them on live data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.plugins.prometheus import promtool
from tests.unit.monitoring.exported_metrics import sample_names

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "tiergate-alerts.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "tiergate-dashboard.json"
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"}


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors() -> set[str]:
    return {slug(m) for m in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), flags=re.M)}


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_each_rule_has_one_source() -> None:
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names))
    assert sorted(p.name for p in RULES.parent.glob("*.yaml")) == [RULES.name]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_each_alert_is_actionable(rule: dict[str, Any]) -> None:
    assert rule.get("for"), "an alert without `for:` pages on one bad scrape"
    assert rule["labels"]["severity"] in ("page", "ticket")
    notes = rule["annotations"]
    assert notes["summary"] and notes["description"]
    path, _, anchor = notes["runbook_url"].partition("#")
    assert path == "docs/runbook.md"
    assert anchor == rule["alert"].lower() and anchor in anchors(), f"no runbook section for #{anchor}"


def test_every_runbook_section_belongs_to_an_alert() -> None:
    sections = {slug(m) for m in re.findall(r"^## (.+)$", RUNBOOK.read_text(), flags=re.M)}
    assert sections == {r["alert"].lower() for r in alert_rules()}


def test_the_runbook_uses_real_cli_verbs() -> None:
    verbs = set(re.findall(r"`tiergate ([a-z]+(?: [a-z]+)?)", RUNBOOK.read_text()))
    known = {"status", "pause", "resume", "retry", "promote", "abort"}
    known |= {f"discards {v}" for v in ("list", "counts")}
    known |= {f"replay {v}" for v in ("start", "status", "pause", "resume", "cancel", "list")}
    for verb in verbs:
        assert verb in known or verb.split()[0] in known, verb


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\btiergate_[a-z_]+\b", expr))


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alerts_read_metrics_the_code_exports(rule: dict[str, Any]) -> None:
    assert metric_names(rule["expr"]) <= sample_names()


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def test_the_dashboard_takes_its_datasource_from_a_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_queries_use_defined_variables_and_exported_metrics() -> None:
    defined = {v["name"] for v in dashboard()["templating"]["list"]} | GRAFANA_BUILTINS
    read: set[str] = set()
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            used = set(re.findall(r"\$\{?(\w+)\}?", target["expr"]))
            assert used <= defined, (panel["title"], used - defined)
            assert metric_names(target["expr"]) <= sample_names(), panel["title"]
            read |= metric_names(target["expr"])
    # The dashboard's subject list: fleet phase, sending, queues, discards and replay.
    for family in (
        "tiergate_operator_tier_phase",
        "tiergate_sender_submits_total",
        "tiergate_sender_queue_depth",
        "tiergate_sender_oldest_queued_age_seconds",
        "tiergate_sender_discards_total",
        "tiergate_replay_discards",
        "tiergate_replay_job_messages",
    ):
        assert family in read, family


def test_dashboard_panels_have_unique_ids_and_fit_the_grid() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, p["title"]


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    """One input series of a promtool rule test."""
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{selector}}}" if labels else name, "values": values}


FLEET = {"namespace": "sms", "fleet": "f"}
SUBMIT = {"tier": "bulk", "revision": "a", "traffic_class": "bulk"}

UNIT = {
    "rule_files": ["rules.yaml"],
    "evaluation_interval": "1m",
    "tests": [
        {
            "interval": "1m",
            "input_series": [
                series("tiergate_operator_tier_phase", "0 0 1x20", tier="bulk", phase="RolledBack", **FLEET),
                series("tiergate_operator_tier_phase", "1 1 0x20", tier="bulk", phase="SignedOff", **FLEET),
                series("tiergate_operator_tier_phase", "1x22", tier="priority", phase="SignedOff", **FLEET),
                series("tiergate_operator_last_reconcile_timestamp_seconds", "0+60x5 300x16"),
                series("tiergate_operator_tier_phase", "1x40", tier="standard", phase="Baking", **FLEET),
                series(
                    "tiergate_operator_tier_phase_since_timestamp_seconds", "0x40", tier="standard", **FLEET
                ),
                series("tiergate_sender_worker_ready", "1x40", tier="standard", revision="a"),
                series(
                    "tiergate_operator_tier_phase_since_timestamp_seconds", "0x22", tier="priority", **FLEET
                ),
                series("tiergate_operator_leader", "1 1 0x20", pod="a"),
                series("tiergate_operator_leader", "0x22", pod="b"),
                series("tiergate_sender_worker_ready", "1x22", tier="bulk", revision="a"),
                series("tiergate_sender_worker_ready", "1 1 0x20", tier="priority", revision="b"),
                series("tiergate_sender_oldest_queued_age_seconds", "0+60x22", traffic_class="bulk"),
                series("tiergate_sender_oldest_queued_age_seconds", "1x22", traffic_class="priority"),
                series("tiergate_sender_submits_total", "0+100x22", result="ok", **SUBMIT),
                series("tiergate_sender_submits_total", "0+20x22", result="error", **SUBMIT),
            ],
            "alert_rule_test": [
                {
                    "eval_time": "5m",
                    "alertname": "TiergateTierHalted",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "page",
                                "namespace": "sms",
                                "fleet": "f",
                                "tier": "bulk",
                                "phase": "RolledBack",
                            }
                        }
                    ],
                },
                {"eval_time": "2m", "alertname": "TiergateTierHalted", "exp_alerts": []},
                {"eval_time": "4m", "alertname": "TiergateOperatorNotReconciling", "exp_alerts": []},
                {
                    "eval_time": "20m",
                    "alertname": "TiergateOperatorNotReconciling",
                    "exp_alerts": [{"exp_labels": {"severity": "page"}}],
                },
                {
                    "eval_time": "10m",
                    "alertname": "TiergateNoReadyWorkers",
                    "exp_alerts": [{"exp_labels": {"severity": "page", "tier": "priority"}}],
                },
                {
                    "eval_time": "15m",
                    "alertname": "TiergateQueueAgeHigh",
                    "exp_alerts": [{"exp_labels": {"severity": "page", "traffic_class": "bulk"}}],
                },
                {
                    "eval_time": "20m",
                    "alertname": "TiergateSubmitErrorRatioHigh",
                    "exp_alerts": [{"exp_labels": {"severity": "page", "tier": "bulk", "revision": "a"}}],
                },
                {"eval_time": "20m", "alertname": "TiergateOperatorAbsent", "exp_alerts": []},
                {"eval_time": "6m", "alertname": "TiergateOperatorNoLeader", "exp_alerts": []},
                {
                    "eval_time": "9m",
                    "alertname": "TiergateOperatorNoLeader",
                    "exp_alerts": [{"exp_labels": {"severity": "page"}}],
                },
                {"eval_time": "20m", "alertname": "TiergateTierStuckProgressing", "exp_alerts": []},
                {
                    "eval_time": "33m",
                    "alertname": "TiergateTierStuckProgressing",
                    "exp_alerts": [
                        {"exp_labels": {"severity": "ticket", "tier": "standard", "phase": "Baking", **FLEET}}
                    ],
                },
            ],
        }
    ],
}


def test_the_rollout_and_sender_alerts_fire_when_they_should(tmp_path: Path) -> None:
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # expressions under test; `check rules` covers templates
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    spec = tmp_path / "tiergate-alerts-test.yaml"
    spec.write_text(yaml.safe_dump(UNIT, sort_keys=False))
    done = promtool("test", "rules", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
