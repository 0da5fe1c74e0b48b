"""``tiergate status`` as text: every line fits 100 columns, checks sit under their tier, the
message is folded, placeholders are explained, and optional rows appear only with their fields."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tiergate.controller.statusview import LEGEND, NOT_EVALUATED, WIDTH, layout, span, tier_lines

ROOT = Path(__file__).resolve().parents[3]
CAPTURED = [d["object"] for d in json.loads((ROOT / "tests/fixtures/sendertier-statuses.json").read_text())]
NOW = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)


def _tier(name: str = "bulk", order: int = 0, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": {}},
        "spec": {"fleet": "sms-senders", "order": order, "trafficClass": name, "healthGate": {"bake": "2m"}},
        "status": status,
    }


def _fits(lines: list[str]) -> None:
    assert lines, "nothing rendered"
    too_wide = [line for line in lines if len(line) > WIDTH]
    assert too_wide == []


def test_every_captured_status_fits_100_columns() -> None:
    lines = layout(CAPTURED, None, NOW)
    _fits(lines)
    assert lines[0] == "fleet sms-senders"


def test_a_rolled_back_tier_shows_its_halt_record_and_says_its_checks_never_ran() -> None:
    rolled = next(t for t in CAPTURED if (t.get("status") or {}).get("phase") == "RolledBack")
    lines = tier_lines(rolled, NOW)
    _fits(lines)
    text = "\n".join(lines)
    assert "? - (-)" not in text
    assert "    halt      progressDeadline: 0 against 2 Ready within 60s" in text
    assert f"    checks    deep-ready           {NOT_EVALUATED}" in text
    assert lines[0].split()[:3] == [str(rolled["spec"]["order"]), rolled["metadata"]["name"], "RolledBack"]
    # The legend explains the placeholder once, under the fleet.
    whole = layout([rolled], None, NOW)
    assert " ".join(whole).count(NOT_EVALUATED + ":") == 1
    assert LEGEND.split(":")[0] in whole[-2] or LEGEND.split(":")[0] in " ".join(whole[-3:])


def test_a_baking_tier_snapshot() -> None:
    tier = _tier(
        phase="Baking",
        release="2026-12-03.1",
        revision="de964e342f",
        signedOffRevision="88aecf0427",
        rollout={"revision": "de964e342f", "bakeSince": (NOW - timedelta(seconds=42)).isoformat()},
        checks=[
            {"name": "error-rate", "result": "Pass", "value": 0.0123, "threshold": "<= 0.05", "passes": 7},
            {
                "name": "deep-ready",
                "result": "Inconclusive",
                "threshold": "3/3 pods",
                "lastError": "no pod IP",
                "passes": 2,
                "failures": 0,
            },
        ],
        message="Baking: revision de964e342f Ready, checks running",
    )
    assert tier_lines(tier, NOW) == [
        "0    bulk              Baking               2026-12-03.1      de964e342f  88aecf0427  bake 1m18s",
        "    checks    error-rate           Pass             0.0123  bound <= 0.05  (7 pass, 0 fail)",
        "              deep-ready           Inconclusive   no value  bound 3/3 pods  (2 pass, 0 fail)",
        "                                   no pod IP",
        "    message   Baking: revision de964e342f Ready, checks running",
    ]


def test_watch_time_left_is_shown_after_sign_off() -> None:
    tier = _tier(
        phase="SignedOff",
        revision="de964e342f",
        rollout={
            "revision": "de964e342f",
            "watchUntil": (NOW + timedelta(minutes=14, seconds=5)).isoformat(),
        },
    )
    assert tier_lines(tier, NOW)[0].endswith("watch 14m05s")
    tier["status"]["rollout"]["watchUntil"] = (NOW - timedelta(seconds=1)).isoformat()
    assert tier_lines(tier, NOW)[0].endswith("-")


def test_a_long_message_and_long_names_are_folded_and_cut_to_fit() -> None:
    tier = _tier(
        name="a-very-long-tier-name-for-priority-traffic",
        phase="Waiting",
        release="release-with-a-key-far-longer-than-its-column",
        message="Waiting: " + "tier bulk has not signed off release R yet, " * 8,
        waitingFor="bulk",
        conditions=[{"type": "Reconciling", "reason": "ReleaseNotSignedOffBelow"}],
    )
    lines = tier_lines(tier, NOW)
    _fits(lines)
    assert "a-very-long-tie…" in lines[0]
    assert "    waiting   ReleaseNotSignedOffBelow, for tier bulk" in lines
    message = [line for line in lines if line.startswith("    message") or line.startswith(" " * 14)]
    assert len(message) >= 4
    assert " ".join(m[14:] for m in message).split() == tier["status"]["message"].split()


@pytest.mark.parametrize(
    ("field", "value", "label"),
    [
        ("canary", {"step": "Canary", "replicas": 1, "ready": 1, "bake": {"left": "30s"}}, "canary"),
        ("approval", {"release": "R2", "approvedBy": "alice@2026-12-03T10:00:00Z"}, "approval"),
        ("untestedRelease", {"release": "R3", "by": "bob@now", "at": "2026-12-03T10:00:00Z"}, "override"),
        (
            "replayJob",
            {"id": "rj_1", "state": "done", "revision": "ab", "createdAt": "x", "replayed": 5},
            "replay",
        ),
        ("notifications", [{"id": "ntf_1", "kind": "RolledBack", "at": "x"}], "notify"),
    ],
)
def test_optional_rows_appear_only_when_their_field_exists(field: str, value: Any, label: str) -> None:
    bare = _tier(phase="SignedOff")
    assert not any(line.startswith(f"    {label}") for line in tier_lines(bare, NOW))
    shown = copy.deepcopy(bare)
    shown["status"][field] = value
    lines = tier_lines(shown, NOW)
    _fits(lines)
    assert any(line.startswith(f"    {label:<10}") for line in lines), lines


def test_a_paused_fleet_of_three_in_order() -> None:
    tiers = [_tier("priority", 2, phase="Waiting"), _tier("bulk", 0, phase="SignedOff"), _tier("standard", 1)]
    tiers[0]["metadata"]["annotations"] = {"tiergate.io/paused": "true"}
    lines = layout(tiers, "sms-senders", NOW)
    _fits(lines)
    assert [line.split()[1] for line in lines[2:]] == ["bulk", "standard", "priority"]
    assert "Waiting (paused)" in lines[-1]
    assert lines[1].split() == ["#", "TIER", "PHASE", "RELEASE", "REVISION", "SIGNED-OFF", "LEFT"]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.9, "59s"), (61, "1m01s"), (7500, "2h05m"), (-3, "0s")]
)
def test_span(seconds: float, text: str) -> None:
    assert span(seconds) == text
