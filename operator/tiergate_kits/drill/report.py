"""The drill's report: one JSON document and one Markdown table comparing the runs side by side."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tiergate_kits.drill.stack import CLASSES

Row = tuple[str, Callable[[Mapping[str, Any]], str]]


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f} %"


def _delay(stats: Mapping[str, Any]) -> str:
    return f"{_num(stats.get('p50'))} / {_num(stats.get('p99'))} / {_num(stats.get('max'))}"


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{float(value):g} s"


def _restored(order: Sequence[Sequence[Any]]) -> str:
    return ", ".join(f"{tier} {_seconds(at)}" for tier, at in order) or "-"


ROWS: Sequence[Row] = (
    ("Messages sent", lambda r: _num(r["sent"])),
    ("Accepted (202)", lambda r: _num(r["accepted"])),
    (
        "Steady state before the release: accepted / delivered per s",
        lambda r: f"{_num(r['steady_accepted_per_s'])} / {_num(r['steady_delivered_per_s'])}",
    ),
    ("Rejected (429 / 5xx)", lambda r: f"{r['rejected']} ({r['rejected_429']} / {r['rejected_5xx']})"),
    ("Connection errors", lambda r: _num(r["connection_errors"])),
    ("**Lost** (accepted, neither with the carrier nor discarded)", lambda r: f"**{r['lost']}**"),
    ("Accepted by the carrier, receipt still missing at the end", lambda r: _num(r["awaiting_receipt"])),
    ("Normal delay p50 / p99 / max (s, before release)", lambda r: _delay(r["normal_delay_s"])),
    ("Delay after release p50 / p99 / max (s)", lambda r: _delay(r["incident_delay_s"])),
    (
        "Delivered late (> threshold) and their p50 / p99 / max (s)",
        lambda r: f"{r['late']} (> {r['late_threshold_s']:g} s): {_delay(r['late_delay_s'])}",
    ),
    (
        "Priority class delay after release p99 / max (s)",
        lambda r: (
            f"{_num(r['per_class'].get('priority', {}).get('delay_s', {}).get('p99'))} / "
            f"{_num(r['per_class'].get('priority', {}).get('delay_s', {}).get('max'))}"
        ),
    ),
    (
        "Traffic handled by the bad release",
        lambda r: f"{r['handled_by_bad']} ({_pct(r['handled_by_bad_share'])})",
    ),
    (
        "Handled by the bad release per tier (class): " + " / ".join(CLASSES),
        lambda r: " / ".join(_num(r["per_class"].get(c, {}).get("handled_by_bad")) for c in CLASSES),
    ),
    (
        "Traffic waiting while the bad release served its tier",
        lambda r: f"{r['exposed']} ({_pct(r['exposed_share'])})",
    ),
    ("Time to detect", lambda r: _seconds(r["time_to_detect_s"])),
    ("Time to halt", lambda r: _seconds(r["time_to_halt_s"])),
    ("Time to roll back (all tiers on the good release)", lambda r: _seconds(r["time_to_recover_s"])),
    ("Failure begins after the release", lambda r: _seconds(r["onset_after_release_s"])),
    ("Failure onset to all tiers back", lambda r: _seconds(r["time_onset_to_recover_s"])),
    ("Tiers restored, in order (s after the onset)", lambda r: _restored(r["tiers_restored_s"])),
    ("Discards by the bad release", lambda r: _num(r["discards_bad"])),
    (
        "Replayed / delivered after replay",
        lambda r: f"{r['discards_replayed']} / {r['discards_replayed_delivered']}",
    ),
    ("Time from first discard to last replayed delivery", lambda r: _seconds(r["time_to_replay_s"])),
    ("Duplicates seen by the SMSC", lambda r: _num(r["smsc_duplicates"])),
    ("Bad release beyond the first tier", lambda r: ", ".join(r["bad_beyond_first_tier"]) or "no"),
    (
        "Human actions",
        lambda r: (
            f"{r['human_actions']}"
            + (f" ({'; '.join(r['human_action_list'])})" if r["human_action_list"] else "")
        ),
    ),
)


def markdown(runs: Sequence[Mapping[str, Any]]) -> str:
    """A table with one column per run (scenario and mode) and one row per measure."""
    heads = [f"{r['scenario']}: {r['mode']}" for r in runs]
    lines = [
        "| Measure | " + " | ".join(heads) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for label, cell in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in runs) + " |")
    return "\n".join(lines) + "\n"


def document(
    runs: Sequence[Mapping[str, Any]], settings: Mapping[str, Any], wall_seconds: float
) -> dict[str, Any]:
    """The JSON report: the drill's settings, its wall time and every run's numbers."""
    return {"settings": dict(settings), "wall_seconds": round(wall_seconds, 1), "runs": list(runs)}


def settings_text(settings: Mapping[str, Any]) -> str:
    """The settings as a Markdown list, so the table can be read on its own."""
    return "\n".join(f"- `{k}`: {v}" for k, v in settings.items()) + "\n"


def write(
    out: Path,
    runs: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
    wall_seconds: float,
    command: str,
) -> str:
    """Write report.json and report.md into ``out``; return the Markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    doc = document(runs, settings, wall_seconds)
    (out / "report.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    table = markdown(runs)
    text = (
        "# tiergate incident drill\n\n"
        f"Produced by `{command}` in {wall_seconds:.0f} s wall time. Every number below comes from "
        "what the run recorded (report.json has them all).\n\n"
        f"{table}\n![timeline](timeline.png)\n\n## Settings\n\n{settings_text(settings)}"
    )
    (out / "report.md").write_text(text)
    return table
