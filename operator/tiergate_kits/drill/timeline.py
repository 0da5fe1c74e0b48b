"""The drill's timeline picture: delivered/s and queue depth per traffic class, events marked.

One row of panels per run, so a baseline and its tiergate counterpart sit one above the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tiergate_kits.drill.analysis import (
    MARK_HUMAN,
    MARK_RELEASE,
    MARK_STEADY,
    MARK_TRAFFIC_END,
    Recording,
    first_mark,
    last_mark,
    series,
)

COLOURS = {"bulk": "tab:blue", "standard": "tab:orange", "priority": "tab:red"}
MARK_STYLE = {MARK_HUMAN: "tab:purple"}


def render(recordings: Sequence[Recording], path: Path, bin_seconds: float = 2.0) -> None:
    """Draw every run into one PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(recordings))
    fig, axes = plt.subplots(rows, 2, figsize=(15, 3.2 * rows), squeeze=False)
    for row, rec in enumerate(recordings):
        xs, rates, qx, depths = series(rec, bin_seconds)
        first = min((s.accepted_at for s in rec.sent), default=0.0)
        origin = first_mark(rec.marks, MARK_RELEASE) or first
        shift = first - origin
        steady = (first_mark(rec.marks, MARK_STEADY) or first) - origin
        end = (last_mark(rec.marks, MARK_TRAFFIC_END) or origin) - origin + 5.0
        left, right = axes[row][0], axes[row][1]
        for cls in rec.classes:
            colour = COLOURS.get(cls)
            keep = [(x + shift, y) for x, y in zip(xs, rates[cls], strict=True) if steady <= x + shift <= end]
            left.plot([x for x, _ in keep], [y for _, y in keep], label=cls, color=colour, linewidth=1)
            qkeep = [
                (x + shift, y) for x, y in zip(qx, depths[cls], strict=True) if steady <= x + shift <= end
            ]
            right.plot([x for x, _ in qkeep], [y for _, y in qkeep], label=cls, color=colour, linewidth=1)
        left.set_title(f"{rec.scenario} / {rec.mode}: delivered per second")
        right.set_title(f"{rec.scenario} / {rec.mode}: queue depth (queued + in flight)")
        for ax in (left, right):
            ax.set_xlabel("seconds since the bad release (from steady state)")
            ax.grid(alpha=0.3)
            top = ax.get_ylim()[1]
            marks = [m for m in rec.marks if m.kind != MARK_STEADY]
            for i, mark in enumerate(sorted(marks, key=lambda m: m.at)):
                x = mark.at - origin
                ax.axvline(x, color=MARK_STYLE.get(mark.kind, "grey"), linestyle="--", linewidth=0.8)
                ax.text(x, top * (0.95 - 0.09 * (i % 6)), f" {mark.label}", fontsize=6.5, va="top")
        left.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
