"""The drill's report numbers, computed from small hand-made recordings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tiergate_kits.drill.analysis import (
    ACCEPTED,
    CONNECTION_ERROR,
    MARK_DETECTED,
    MARK_HALTED,
    MARK_HUMAN,
    MARK_ONSET,
    MARK_RECOVERED,
    MARK_RELEASE,
    MARK_STEADY,
    MARK_TIER_RESTORED,
    MARK_TRAFFIC_END,
    RATE_LIMITED,
    SERVER_ERROR,
    DiscardRow,
    Fate,
    Mark,
    QueueSample,
    Recording,
    Sent,
    Window,
    exposed,
    from_json,
    late_threshold,
    lost,
    percentile,
    series,
    summarise,
    to_json,
)
from tiergate_kits.drill.report import markdown, write
from tiergate_kits.drill.timeline import render
from tiergate_kits.drill.traffic import outcome_of

CLASSES = ("bulk", "standard", "priority")


def recording(
    sent: Sequence[Sent],
    fates: Sequence[Fate],
    *,
    discards: Sequence[DiscardRow] = (),
    marks: Sequence[Mark] = (),
    windows: Sequence[Window] = (),
    **kw: Any,
) -> Recording:
    return Recording(
        mode=kw.pop("mode", "tiergate"),
        scenario=kw.pop("scenario", "no-bind"),
        classes=CLASSES,
        sent=list(sent),
        fates={f.message_id: f for f in fates},
        discards=list(discards),
        marks=list(marks),
        bad_windows=list(windows),
        queue=kw.pop("queue", []),
        bad_revisions=frozenset({"bad"}),
        **kw,
    )


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([3.0], 99, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(1, 101)], 100, 100.0),
        ([5.0, 1.0, 3.0], 0, 1.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize(("p99", "expected"), [(None, 1.0), (0.1, 1.0), (0.6, 1.2), (3.0, 6.0)])
def test_late_means_over_twice_the_normal_p99_and_at_least_a_second(
    p99: float | None, expected: float
) -> None:
    assert late_threshold(p99) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(202, ACCEPTED), (429, RATE_LIMITED), (503, SERVER_ERROR), (500, SERVER_ERROR), (400, "4xx")],
)
def test_http_status_maps_to_an_outcome(status: int, outcome: str) -> None:
    assert outcome_of(status) == outcome


def test_lost_counts_accepted_messages_neither_with_the_carrier_nor_discarded() -> None:
    sent = [
        Sent("bulk", "c", 1.0, ACCEPTED, "delivered"),
        Sent("bulk", "c", 1.0, ACCEPTED, "discarded"),
        Sent("bulk", "c", 1.0, ACCEPTED, "failed"),
        Sent("bulk", "c", 1.0, ACCEPTED, "queued"),
        Sent("bulk", "c", 1.0, ACCEPTED, "submitted"),
        Sent("bulk", "c", 1.0, ACCEPTED, "missing"),
        Sent("bulk", "c", 1.0, RATE_LIMITED),
        Sent("bulk", "c", 1.0, CONNECTION_ERROR),
    ]
    fates = {
        "delivered": Fate("delivered", "delivered", 2.0),
        "discarded": Fate("discarded", "discarded", None),
        "failed": Fate("failed", "failed", None),
        "queued": Fate("queued", "queued", None),
        "submitted": Fate("submitted", "submitted", None),
    }
    assert sorted(lost(sent, fates)) == ["missing", "queued"]


@pytest.mark.parametrize(
    ("accepted", "delivered", "window", "expected"),
    [
        (10.0, 12.0, Window("bulk", 11.0, 20.0), True),  # waited into the window
        (10.0, 10.5, Window("bulk", 11.0, 20.0), False),  # delivered before it opened
        (25.0, 26.0, Window("bulk", 11.0, 20.0), False),  # accepted after it closed
        (15.0, 16.0, Window("standard", 11.0, 20.0), False),  # another class's tier
        (5.0, None, Window("bulk", 11.0, 20.0), True),  # never delivered: waits to the end
    ],
)
def test_exposed_means_waiting_while_the_class_tier_ran_the_bad_release(
    accepted: float, delivered: float | None, window: Window, expected: bool
) -> None:
    s = Sent("bulk", "c", accepted, ACCEPTED, "m")
    fate = Fate("m", "delivered" if delivered else "queued", delivered)
    assert exposed(s, fate, [window], end=30.0) is expected


def _scenario() -> Recording:
    sent: list[Sent] = []
    fates: list[Fate] = []
    # Steady: delivered 0.2 s after acceptance, from t=0 to t=9.
    for i in range(10):
        sent.append(Sent("bulk", f"c{i % 3}", float(i), ACCEPTED, f"s{i}"))
        fates.append(Fate(f"s{i}", "delivered", i + 0.2))
    # After the release at t=10: bulk waits 5 s (late), priority is on time.
    for i in range(10, 20):
        cls = "bulk" if i % 2 else "priority"
        delay = 5.0 if cls == "bulk" else 0.2
        sent.append(Sent(cls, "c0", float(i), ACCEPTED, f"s{i}"))
        fates.append(Fate(f"s{i}", "delivered", i + delay, handled_by_bad=(i == 11)))
    sent.append(Sent("bulk", "c0", 12.0, RATE_LIMITED))
    sent.append(Sent("bulk", "c0", 12.0, SERVER_ERROR))
    # One discard of the bad revision, replayed and delivered; one of the good, not replayed.
    sent.append(Sent("bulk", "c1", 13.0, ACCEPTED, "d1"))
    fates.append(Fate("d1", "delivered", 40.0, handled_by_bad=True, replay_count=1))
    sent.append(Sent("standard", "c1", 13.0, ACCEPTED, "d2"))
    fates.append(Fate("d2", "discarded", None))
    discards = [
        DiscardRow("d1", "bad", "max-attempts", 20.0, 30.0),
        DiscardRow("d2", "good", "rejected", 21.0, None),
    ]
    marks = [
        Mark(0.0, MARK_STEADY, "steady"),
        Mark(10.0, MARK_RELEASE, "release"),
        Mark(25.0, MARK_DETECTED, "noticed"),
        Mark(25.0, MARK_HALTED, "stopped"),
        Mark(25.0, MARK_HUMAN, "manual rollback"),
        Mark(35.0, MARK_RECOVERED, "back"),
        Mark(36.0, MARK_HUMAN, "manual replay"),
        Mark(20.0, MARK_TRAFFIC_END, "end"),
    ]
    return recording(
        sent,
        fates,
        discards=discards,
        marks=marks,
        windows=[Window("bulk", 10.0, 35.0)],
        mode="baseline",
        smsc_duplicates=0,
        tiers_beyond_first_with_bad=("priority", "standard"),
    )


def test_summary_of_a_recorded_run() -> None:
    r = summarise(_scenario())
    assert (r["sent"], r["accepted"], r["rejected"], r["rejected_429"], r["rejected_5xx"]) == (
        24,
        22,
        2,
        1,
        1,
    )
    assert r["lost"] == 0
    assert r["normal_delay_s"] == {"p50": 0.2, "p99": 0.2, "max": 0.2}
    assert (r["steady_accepted_per_s"], r["steady_delivered_per_s"]) == (1.0, 1.0)
    assert r["late_threshold_s"] == 1.0
    # Five bulk messages waited 5 s and the replayed one 27 s: six late.
    assert r["late"] == 6
    assert r["late_delay_s"]["max"] == 27.0
    assert r["per_class"]["priority"]["late"] == 0
    assert r["per_class"]["bulk"]["late"] == 6
    assert r["handled_by_bad"] == 2
    assert r["handled_by_bad_share"] == round(2 / 12, 4)
    assert [r["per_class"][c]["handled_by_bad"] for c in ("bulk", "standard", "priority")] == [2, 0, 0]
    assert r["exposed"] == 6  # the five bulk messages after the release and d1; not priority
    assert (r["time_to_detect_s"], r["time_to_halt_s"], r["time_to_recover_s"]) == (15.0, 15.0, 25.0)
    assert (r["discards_bad"], r["discards_replayed"], r["discards_replayed_delivered"]) == (1, 1, 1)
    assert r["replay_complete"] is True
    assert r["time_to_replay_s"] == 20.0  # first bad discard at 20, replayed delivery at 40
    assert r["human_actions"] == 2
    assert r["human_action_list"] == ["manual rollback", "manual replay"]
    assert r["bad_beyond_first_tier"] == ["priority", "standard"]
    assert (r["onset_after_release_s"], r["time_onset_to_recover_s"], r["tiers_restored_s"]) == (
        None,
        None,
        [],
    )


def test_a_late_failure_is_timed_from_its_onset_and_tiers_restored_in_order() -> None:
    rec = recording(
        [Sent("bulk", "c", 1.0, ACCEPTED, "m")],
        [Fate("m", "delivered", 1.5)],
        marks=[
            Mark(10.0, MARK_RELEASE, "release"),
            Mark(131.0, MARK_ONSET, "failure begins"),
            Mark(150.0, MARK_TIER_RESTORED, "bulk"),
            Mark(141.5, MARK_TIER_RESTORED, "priority"),
            Mark(146.0, MARK_TIER_RESTORED, "standard"),
            Mark(150.0, MARK_RECOVERED, "every tier back"),
        ],
    )
    r = summarise(rec)
    assert r["onset_after_release_s"] == 121.0
    assert r["time_onset_to_recover_s"] == 19.0
    assert r["tiers_restored_s"] == [("priority", 10.5), ("standard", 15.0), ("bulk", 19.0)]
    table = markdown([r])
    assert (
        "| Tiers restored, in order (s after the onset) | priority 10.5 s, standard 15 s, bulk 19 s |"
        in table
    )
    assert "| Failure onset to all tiers back | 19 s |" in table


def test_an_unreplayed_bad_discard_leaves_replay_incomplete() -> None:
    rec = recording(
        [Sent("bulk", "c", 1.0, ACCEPTED, "m")],
        [Fate("m", "discarded", None)],
        discards=[DiscardRow("m", "bad", "max-attempts", 2.0, None)],
        marks=[Mark(0.5, MARK_RELEASE, "release")],
    )
    r = summarise(rec)
    assert r["lost"] == 0  # discarded with a reason is accounted for
    assert r["discards_bad"] == 1
    assert r["replay_complete"] is False
    assert r["time_to_replay_s"] is None
    assert r["human_actions"] == 0


def test_series_bins_deliveries_per_class_and_keeps_queue_samples() -> None:
    rec = recording(
        [Sent("bulk", "c", 100.0, ACCEPTED, "a"), Sent("priority", "c", 100.5, ACCEPTED, "b")],
        [Fate("a", "delivered", 100.2), Fate("b", "delivered", 102.7)],
        queue=[QueueSample(101.0, {"bulk": 3}), QueueSample(102.0, {"priority": 1})],
    )
    xs, rates, qx, depths = series(rec, bin_seconds=1.0)
    assert xs == [0.0, 1.0, 2.0]
    assert rates["bulk"] == [1.0, 0.0, 0.0]
    assert rates["priority"] == [0.0, 0.0, 1.0]
    assert qx == [1.0, 2.0]
    assert depths == {"bulk": [3, 0], "standard": [0, 0], "priority": [0, 1]}


def test_markdown_has_one_column_per_run_and_the_safety_rows() -> None:
    r = summarise(_scenario())
    table = markdown([r, {**r, "mode": "tiergate", "lost": 0}])
    lines = table.splitlines()
    assert lines[0] == "| Measure | no-bind: baseline | no-bind: tiergate |"
    assert all(line.count("|") == 4 for line in lines)
    assert any(line.startswith("| **Lost**") for line in lines)
    assert "manual rollback; manual replay" in table
    assert "| Traffic handled by the bad release per tier (bulk / standard / priority) | 2 / 0 / 0 |" in table


def test_the_bad_release_traffic_and_pods_are_counted_per_tier() -> None:
    rec = replace(
        _scenario(),
        mode="tiergate-canary",
        bad_pods_max={"bulk": 1, "standard": 0, "priority": 0},
        params={"replicas": 4, "canary": {"percent": 25}},
    )
    r = summarise(rec)
    assert {c: v["handled_by_bad"] for c, v in r["per_class"].items()} == {
        "bulk": 2,
        "standard": 0,
        "priority": 0,
    }
    assert r["bad_pods_max"] == {"bulk": 1, "standard": 0, "priority": 0}
    table = markdown([r])
    assert "| Traffic handled by the bad release per tier (bulk / standard / priority) | 2 / 0 / 0 |" in table
    assert "| Worker pods per tier | 4 (canary: percent 25) |" in table
    most = "| Most pods on the bad release at once per tier (bulk / standard / priority) |"
    assert f"{most} 1 / 0 / 0 |" in table


def test_a_report_from_before_the_per_tier_counts_still_renders() -> None:
    r = summarise(_scenario())
    for v in r["per_class"].values():
        del v["handled_by_bad"]
    del r["bad_pods_max"]
    r["params"] = {}
    table = markdown([r])
    assert "| Worker pods per tier | - |" in table
    assert "| Most pods on the bad release at once per tier (bulk / standard / priority) | - |" in table


def test_a_recording_survives_its_json_form() -> None:
    rec = replace(_scenario(), bad_pods_max={"bulk": 1})
    again = from_json(json.loads(json.dumps(to_json(rec))))
    assert summarise(again) == summarise(rec)
    old = to_json(rec)
    del old["bad_pods_max"]  # a recording kept before the drill counted pods
    assert from_json(old).bad_pods_max == {}


def test_the_timeline_is_drawn_from_the_recordings(tmp_path: Path) -> None:
    path = tmp_path / "timeline.png"
    render([_scenario(), _scenario()], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_files_hold_the_table_and_every_number(tmp_path: Path) -> None:
    r = summarise(_scenario())
    table = write(tmp_path, [r], {"rate": 150.0}, 12.0, "tiergate drill --short")
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["runs"][0]["late"] == r["late"]
    assert doc["settings"] == {"rate": 150.0}
    md = (tmp_path / "report.md").read_text()
    assert table in md
    assert "`tiergate drill --short`" in md
