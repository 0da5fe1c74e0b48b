"""The shipped alerting rules are valid and fire when they should (Prometheus's own promtool)."""

from __future__ import annotations

from pathlib import Path

import yaml
from tests.plugins.prometheus import promtool

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "tiergate-alerts.yaml"


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


UNIT = {
    "rule_files": ["rules.yaml"],
    "evaluation_interval": "1m",
    "tests": [
        {
            "interval": "1m",
            "input_series": [
                {
                    "series": 'tiergate_replay_discards{reason="max-attempts",tier="bulk",replayed="false"}',
                    "values": "0+50x30",
                },
                {
                    "series": 'tiergate_replay_discards{reason="rejected",tier="bulk",replayed="false"}',
                    "values": "5x30",
                },
                {
                    "series": 'tiergate_replay_oldest_unreplayed_discard_age_seconds{reason="max-attempts"}',
                    "values": "3000+60x30",
                },
                {
                    "series": 'tiergate_replay_oldest_unreplayed_discard_age_seconds{reason="rejected"}',
                    "values": "90000x30",
                },
                {"series": 'tiergate_replay_job_state{replay_job="J1",state="failed"}', "values": "0 0 1x28"},
                {"series": 'tiergate_replay_job_state{replay_job="J2",state="running"}', "values": "1x40"},
                {
                    "series": 'tiergate_replay_job_messages{replay_job="J2",outcome="replayed"}',
                    "values": "0 10 20 30x37",
                },
                {
                    "series": 'tiergate_replay_job_messages{replay_job="J2",outcome="skipped"}',
                    "values": "0x40",
                },
                {"series": 'tiergate_replay_job_state{replay_job="J3",state="running"}', "values": "1x40"},
                {
                    "series": 'tiergate_replay_job_messages{replay_job="J3",outcome="replayed"}',
                    "values": "0+5x40",
                },
                {
                    "series": 'tiergate_replay_job_messages{replay_job="J3",outcome="skipped"}',
                    "values": "0x40",
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": "20m",
                    "alertname": "TiergateDiscardsRising",
                    "exp_alerts": [
                        {"exp_labels": {"severity": "page", "tier": "bulk", "reason": "max-attempts"}}
                    ],
                },
                {
                    "eval_time": "25m",
                    "alertname": "TiergateDiscardsSitUnreplayed",
                    "exp_alerts": [{"exp_labels": {"severity": "page", "reason": "max-attempts"}}],
                },
                {"eval_time": "5m", "alertname": "TiergateDiscardsSitUnreplayed", "exp_alerts": []},
                {
                    "eval_time": "5m",
                    "alertname": "TiergateReplayJobFailed",
                    "exp_alerts": [
                        {"exp_labels": {"severity": "ticket", "replay_job": "J1", "state": "failed"}}
                    ],
                },
                {
                    "eval_time": "30m",
                    "alertname": "TiergateReplayJobStuck",
                    "exp_alerts": [
                        {"exp_labels": {"severity": "page", "replay_job": "J2", "state": "running"}}
                    ],
                },
            ],
        }
    ],
}


def test_rules_fire_on_rising_stale_failed_and_stuck(tmp_path: Path) -> None:
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # the expressions are under test; `check` covers templates
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    spec = tmp_path / "replay-alerts-test.yaml"
    spec.write_text(yaml.safe_dump(UNIT, sort_keys=False))
    result = promtool("test", "rules", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr
