"""The text of ``tiergate status``: each fleet's tiers laid out for a 100-column terminal.

One line per tier holds what ``kubectl get st`` would (order, tier, phase, release, revisions, time
left in the bake or the watch); under it, indented, the rows that only some tiers have (halt record,
checks, waiting reason, canary, approval, override, replay, notifications) and the message, folded.
A row that a status field feeds is one entry of `ROWS`, so a new status field is one line here.
A check with no result yet says so in words, and a legend under the fleet says what the
placeholders mean.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from tiergate.api.annotations import ANNOTATION_PAUSED
from tiergate.api.durations import parse_duration

WIDTH = 100
INDENT = 4
LABEL = 10
NOT_EVALUATED = "not evaluated"
NO_VALUE = "no value"
LEGEND = (
    f"{NOT_EVALUATED}: no result for the current revision yet (a tier that halted before its checks "
    f"ran shows the halt record instead); {NO_VALUE}: the last evaluation returned no sample "
    "(inconclusive, never a pass); -: not set."
)

# (header, width); the last column takes what is left of WIDTH.
COLUMNS = (("#", 3), ("TIER", 16), ("PHASE", 19), ("RELEASE", 16), ("REVISION", 10), ("SIGNED-OFF", 10))
GAP = 2

Status = Mapping[str, Any]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def span(seconds: float) -> str:
    """A duration for people: ``42s``, ``5m03s``, ``2h05m``."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def time_left(tier: Mapping[str, Any], now: datetime) -> str:
    """Time left in the bake, or in the watch after sign-off; ``-`` when neither runs."""
    status = tier.get("status") or {}
    rollout = status.get("rollout") or {}
    until = rollout.get("watchUntil")
    if status.get("phase") == "SignedOff" and until and rollout.get("revision") == status.get("revision"):
        left = (_time(until) - now).total_seconds()
        return f"watch {span(left)}" if left > 0 else "-"
    if status.get("phase") != "Baking":
        return "-"
    since = rollout.get("bakeSince")
    if not since:
        return "bake: no pass"
    bake = parse_duration(tier["spec"].get("healthGate", {}).get("bake", "120s"))
    return f"bake {span(bake - (now - _time(since)).total_seconds())}"


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _line(cells: Sequence[str]) -> str:
    widths = [w for _, w in COLUMNS]
    last = WIDTH - sum(widths) - GAP * len(widths)
    parts = [_cell(c, w).ljust(w) for c, w in zip(cells, widths, strict=False)]
    parts.append(_cell(cells[len(widths)], last))
    return (" " * GAP).join(parts).rstrip()


def _row(label: str, text: str) -> list[str]:
    """A labelled row under its tier, folded to the width."""
    head = " " * INDENT + label.ljust(LABEL)
    body = WIDTH - len(head)
    lines = textwrap.wrap(text, body, break_on_hyphens=False) or [""]
    return [head + lines[0], *(" " * len(head) + rest for rest in lines[1:])]


def _value(value: Any) -> str:
    return NO_VALUE if value is None else f"{value:.4g}"


def _check_lines(check: Mapping[str, Any]) -> list[str]:
    result = check.get("result")
    if result is None:
        return [f"{_cell(check['name'], 20):<20} {NOT_EVALUATED}"]
    text = f"{_cell(check['name'], 20):<20} {result:<12} {_value(check.get('value')):>10}"
    text += f"  bound {check.get('threshold') or '-'}"
    text += f"  ({check.get('passes', 0)} pass, {check.get('failures', 0)} fail)"
    lines = [text]
    if check.get("lastError") and result != "Pass":
        lines.append(f"{'':<20} {check['lastError']}")
    return lines


def _halt(status: Status) -> str | None:
    halt = status.get("halt")
    if not halt:
        return None
    text = f"{halt.get('check')}: {_value(halt.get('value'))} against {halt.get('threshold') or '-'}"
    if halt.get("during"):
        text += f" during {halt['during']}"
    if halt.get("query"):
        text += f"; query {halt['query']}"
    return text


def _waiting(status: Status) -> str | None:
    if status.get("phase") != "Waiting":
        return None
    reasons = {c.get("type"): c.get("reason") for c in status.get("conditions") or []}
    reason = reasons.get("Reconciling") or reasons.get("Ready")
    behind = status.get("waitingFor")
    parts = [p for p in (reason, f"for tier {behind}" if behind else None) if p]
    return ", ".join(parts) or None


def _fields(value: Any) -> str | None:
    """A status object as ``key=value`` pairs (nested objects flattened one level)."""
    if not isinstance(value, Mapping) or not value:
        return None
    parts = []
    for key, item in value.items():
        if isinstance(item, Mapping):
            parts += [f"{key}.{k}={v}" for k, v in item.items() if not isinstance(v, Mapping | list)]
        elif not isinstance(item, list):
            parts.append(f"{key}={item}")
    return " ".join(parts) or None


def _override(status: Status) -> str | None:
    override = status.get("untestedRelease")
    if not override:
        return None
    return f"release {override.get('release')} let through untested by {override.get('by')}"


def _replay(status: Status) -> str | None:
    job = status.get("replayJob")
    if not job:
        return None
    counts = f"{job.get('replayed') or 0} replayed, {job.get('skipped') or 0} skipped"
    return f"job {job.get('id')} {job.get('state')} (revision {job.get('revision')}): {counts}"


def _notifications(status: Status) -> str | None:
    pending = [
        n.get("kind", "?")
        for n in status.get("notifications") or []
        if not n.get("sentAt") and not n.get("gaveUpAt")
    ]
    return f"{len(pending)} pending: {', '.join(pending)}" if pending else None


ROWS: tuple[tuple[str, Callable[[Status], str | None]], ...] = (
    ("halt", _halt),
    ("waiting", _waiting),
    ("canary", lambda st: _fields(st.get("canary"))),
    ("approval", lambda st: _fields(st.get("approval"))),
    ("override", _override),
    ("replay", _replay),
    ("notify", _notifications),
)


def tier_lines(tier: Mapping[str, Any], now: datetime) -> list[str]:
    """One tier: its summary line, then its rows and its checks, then its message."""
    status: Status = tier.get("status") or {}
    spec = tier.get("spec", {})
    name = tier["metadata"]["name"]
    paused = (tier["metadata"].get("annotations") or {}).get(ANNOTATION_PAUSED) == "true"
    phase = (status.get("phase") or "Pending") + (" (paused)" if paused else "")
    lines = [
        _line(
            [
                str(spec.get("order", 0)),
                name,
                phase,
                status.get("release") or "-",
                status.get("revision") or "-",
                status.get("signedOffRevision") or "-",
                time_left(tier, now),
            ]
        )
    ]
    if spec.get("trafficClass") and spec["trafficClass"] != name:
        lines += _row("class", spec["trafficClass"])
    for label, row in ROWS:
        text = row(status)
        if text:
            lines += _row(label, text)
    checks = status.get("checks") or []
    for i, check in enumerate(checks):
        for j, text in enumerate(_check_lines(check)):
            lines += _row("checks" if i == 0 and j == 0 else "", text)
    if status.get("message"):
        lines += _row("message", status["message"])
    return lines


def _uses_placeholders(tiers: Sequence[Mapping[str, Any]]) -> bool:
    for tier in tiers:
        for check in (tier.get("status") or {}).get("checks") or []:
            if check.get("result") is None or check.get("value") is None:
                return True
    return False


def fleet_tiers(items: Sequence[Mapping[str, Any]], fleet: str) -> list[Any]:
    """The tiers of one fleet, lowest order first."""
    tiers = [t for t in items if t.get("spec", {}).get("fleet", "") == fleet]
    return sorted(tiers, key=lambda t: (t["spec"].get("order", 0), t["metadata"]["name"]))


def layout(items: Sequence[Mapping[str, Any]], fleet: str | None, now: datetime) -> list[str]:
    """Every fleet (or one) as lines of at most `WIDTH` characters."""
    fleets = sorted(
        {t["spec"].get("fleet", "") for t in items if not fleet or t["spec"].get("fleet") == fleet}
    )
    out: list[str] = []
    for name in fleets:
        tiers = fleet_tiers(items, name)
        if out:
            out.append("")
        out.append(f"fleet {name}")
        out.append(_line([h for h, _ in COLUMNS] + ["LEFT"]))
        for tier in tiers:
            out += tier_lines(tier, now)
        if _uses_placeholders(tiers):
            out += textwrap.wrap(LEGEND, WIDTH)
    return out
