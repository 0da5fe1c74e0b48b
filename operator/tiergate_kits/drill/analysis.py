"""The drill's numbers, computed only from what a run recorded: pure functions, no I/O.

A run records every message it sent (accept time, HTTP outcome, id), every message's fate in
the store at the end, the discards, queue depth samples, the windows in which a tier had pods
of the bad revision, and marks for what happened when (release, detection, recovery, human
steps, replay). Everything in the report is derived here, so it can be tested with plain data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ACCEPTED = "202"
RATE_LIMITED = "429"
SERVER_ERROR = "5xx"
CLIENT_ERROR = "4xx"
CONNECTION_ERROR = "error"

# "submitted": the carrier accepted the message (it has the carrier's id) but its delivery
# receipt had not come back when the run ended; the message is with the carrier, not lost.
DONE_STATES = frozenset({"delivered", "discarded", "failed", "submitted"})

MARK_STEADY = "steady"
MARK_RELEASE = "release"
MARK_DETECTED = "detected"
MARK_HALTED = "halted"
MARK_RECOVERED = "recovered"
MARK_HUMAN = "human"
MARK_REPLAY_STARTED = "replay-started"
MARK_REPLAY_DONE = "replay-done"
MARK_TRAFFIC_END = "traffic-end"
MARK_ONSET = "onset"
MARK_TIER_RESTORED = "tier-restored"


@dataclass(frozen=True, slots=True)
class Sent:
    """One message the drill posted: when the API answered, and what it answered."""

    traffic_class: str
    customer: str
    accepted_at: float
    outcome: str
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Fate:
    """A message's state in the store at the end of the run."""

    message_id: str
    state: str
    delivered_at: float | None
    handled_by_bad: bool = False
    replay_count: int = 0


@dataclass(frozen=True, slots=True)
class DiscardRow:
    """One discard event as the store kept it."""

    message_id: str
    revision: str | None
    reason: str
    discarded_at: float
    replayed_at: float | None


@dataclass(frozen=True, slots=True)
class Mark:
    """Something that happened at a time: a release, a halt, a human action."""

    at: float
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class Window:
    """A span in which a traffic class's tier had Ready pods of the bad revision."""

    traffic_class: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class QueueSample:
    """Queued plus in-flight messages per traffic class at one time."""

    at: float
    depths: Mapping[str, int]


@dataclass(frozen=True)
class Recording:
    """Everything one scenario run recorded."""

    mode: str
    scenario: str
    classes: tuple[str, ...]
    sent: Sequence[Sent]
    fates: Mapping[str, Fate]
    discards: Sequence[DiscardRow]
    marks: Sequence[Mark]
    bad_windows: Sequence[Window]
    queue: Sequence[QueueSample]
    bad_revisions: frozenset[str]
    smsc_duplicates: int = 0
    tiers_beyond_first_with_bad: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def first_mark(marks: Iterable[Mark], kind: str) -> float | None:
    """Time of the first mark of a kind."""
    times = [m.at for m in marks if m.kind == kind]
    return min(times) if times else None


def last_mark(marks: Iterable[Mark], kind: str) -> float | None:
    """Time of the last mark of a kind."""
    times = [m.at for m in marks if m.kind == kind]
    return max(times) if times else None


def late_threshold(normal_p99: float | None, floor: float = 1.0) -> float:
    """Delay above which a message counts as late: twice the normal p99, at least ``floor``."""
    return max(floor, 2.0 * (normal_p99 or 0.0))


def lost(sent: Iterable[Sent], fates: Mapping[str, Fate]) -> list[str]:
    """Accepted messages that at the end were neither with the carrier nor discarded with a reason."""
    out = []
    for s in sent:
        if s.outcome != ACCEPTED:
            continue
        fate = fates.get(s.message_id or "")
        if fate is None or fate.state not in DONE_STATES:
            out.append(s.message_id or "?")
    return out


def exposed(s: Sent, fate: Fate | None, windows: Iterable[Window], end: float) -> bool:
    """Whether a message waited while its class's tier had the bad revision serving (Ready pods)."""
    until = fate.delivered_at if fate and fate.delivered_at is not None else end
    return any(
        w.traffic_class == s.traffic_class and w.start <= until and s.accepted_at <= w.end for w in windows
    )


def _delays(items: Iterable[tuple[Sent, Fate | None]]) -> list[float]:
    return [
        max(0.0, f.delivered_at - s.accepted_at)
        for s, f in items
        if f is not None and f.delivered_at is not None and f.state == "delivered"
    ]


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50": _round(percentile(values, 50)),
        "p99": _round(percentile(values, 99)),
        "max": _round(max(values) if values else None),
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _since(at: float | None, start: float | None) -> float | None:
    return None if at is None or start is None else round(at - start, 1)


def summarise(rec: Recording) -> dict[str, Any]:
    """The report's numbers for one run."""
    release = first_mark(rec.marks, MARK_RELEASE)
    traffic_end = last_mark(rec.marks, MARK_TRAFFIC_END) or max(
        (s.accepted_at for s in rec.sent), default=0.0
    )
    outcomes: dict[str, int] = {}
    for s in rec.sent:
        outcomes[s.outcome] = outcomes.get(s.outcome, 0) + 1
    accepted = [s for s in rec.sent if s.outcome == ACCEPTED]
    pairs = [(s, rec.fates.get(s.message_id or "")) for s in accepted]
    steady = first_mark(rec.marks, MARK_STEADY) or 0.0
    before = [(s, f) for s, f in pairs if release is not None and steady <= s.accepted_at < release]
    after = [(s, f) for s, f in pairs if release is None or s.accepted_at >= release]
    span = (release - steady) if release is not None and release > steady else None
    steady_delivered = sum(
        1
        for f in rec.fates.values()
        if f.delivered_at is not None and release and steady <= f.delivered_at < release
    )
    normal = _delays(before)
    normal_stats = _stats(normal)
    threshold = late_threshold(normal_stats["p99"])
    incident = _delays(after)
    late = [d for d in incident if d > threshold]
    per_class: dict[str, dict[str, Any]] = {}
    for cls in rec.classes:
        mine = [(s, f) for s, f in after if s.traffic_class == cls]
        delays = _delays(mine)
        per_class[cls] = {
            "accepted": len(mine),
            "late": sum(1 for d in delays if d > threshold),
            "delay_s": _stats(delays),
            "handled_by_bad": sum(1 for _, f in mine if f is not None and f.handled_by_bad),
        }
    handled_bad = sum(1 for _, f in after if f is not None and f.handled_by_bad)
    exposed_count = sum(1 for s, f in after if exposed(s, f, rec.bad_windows, traffic_end))
    bad_discards = [d for d in rec.discards if d.revision in rec.bad_revisions]
    replayed = [d for d in bad_discards if d.replayed_at is not None]
    replay_delivered = [
        d
        for d in replayed
        if (f := rec.fates.get(d.message_id)) is not None and f.state == "delivered" and f.delivered_at
    ]
    recovered = first_mark(rec.marks, MARK_RECOVERED)
    onset = first_mark(rec.marks, MARK_ONSET)
    replay_end = max((rec.fates[d.message_id].delivered_at or 0.0 for d in replay_delivered), default=None)
    first_discard = min((d.discarded_at for d in bad_discards), default=None)
    humans = [m for m in rec.marks if m.kind == MARK_HUMAN]
    return {
        "mode": rec.mode,
        "scenario": rec.scenario,
        "sent": len(rec.sent),
        "accepted": len(accepted),
        "rejected": outcomes.get(RATE_LIMITED, 0) + outcomes.get(SERVER_ERROR, 0),
        "rejected_429": outcomes.get(RATE_LIMITED, 0),
        "rejected_5xx": outcomes.get(SERVER_ERROR, 0),
        "rejected_4xx": outcomes.get(CLIENT_ERROR, 0),
        "connection_errors": outcomes.get(CONNECTION_ERROR, 0),
        "lost": len(lost(rec.sent, rec.fates)),
        "delivered": sum(1 for _, f in pairs if f is not None and f.state == "delivered"),
        "discarded_final": sum(1 for _, f in pairs if f is not None and f.state == "discarded"),
        "failed_final": sum(1 for _, f in pairs if f is not None and f.state == "failed"),
        "awaiting_receipt": sum(1 for _, f in pairs if f is not None and f.state == "submitted"),
        "steady_accepted_per_s": round(len(before) / span, 1) if span else None,
        "steady_delivered_per_s": round(steady_delivered / span, 1) if span else None,
        "normal_delay_s": normal_stats,
        "late_threshold_s": round(threshold, 2),
        "incident_accepted": len(after),
        "late": len(late),
        "late_delay_s": _stats(late),
        "incident_delay_s": _stats(incident),
        "per_class": per_class,
        "handled_by_bad": handled_bad,
        "handled_by_bad_share": _share(handled_bad, len(after)),
        "exposed": exposed_count,
        "exposed_share": _share(exposed_count, len(after)),
        "time_to_detect_s": _since(first_mark(rec.marks, MARK_DETECTED), release),
        "time_to_halt_s": _since(first_mark(rec.marks, MARK_HALTED), release),
        "time_to_recover_s": _since(recovered, release),
        "onset_after_release_s": _since(onset, release),
        "time_onset_to_recover_s": _since(recovered, onset),
        "tiers_restored_s": tiers_restored(rec.marks, onset),
        "discards_bad": len(bad_discards),
        "discards_replayed": len(replayed),
        "discards_replayed_delivered": len(replay_delivered),
        "replay_complete": len(replay_delivered) == len(bad_discards),
        "time_to_replay_s": _since(replay_end, first_discard) if replay_delivered else None,
        "replay_done_after_recovery_s": _since(replay_end, recovered) if replay_delivered else None,
        "smsc_duplicates": rec.smsc_duplicates,
        "human_actions": len(humans),
        "human_action_list": [m.label for m in humans],
        "bad_beyond_first_tier": list(rec.tiers_beyond_first_with_bad),
        "params": dict(rec.params),
    }


def tiers_restored(marks: Iterable[Mark], onset: float | None) -> list[tuple[str, float | None]]:
    """Each tier back on the good release, in the order it happened: (tier, seconds after the onset)."""
    restored = sorted((m for m in marks if m.kind == MARK_TIER_RESTORED), key=lambda m: m.at)
    return [(m.label, _since(m.at, onset)) for m in restored]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def series(
    rec: Recording, bin_seconds: float = 1.0
) -> tuple[list[float], dict[str, list[float]], list[float], dict[str, list[int]]]:
    """Delivered/s per class in bins, and queue depth per class, both on seconds since the start."""
    times = [s.accepted_at for s in rec.sent]
    start = min(times) if times else 0.0
    delivered_at = [
        (s.traffic_class, f.delivered_at)
        for s in rec.sent
        if (f := rec.fates.get(s.message_id or "")) is not None and f.delivered_at is not None
    ]
    end = max([t for _, t in delivered_at] + times + [start])
    n = int((end - start) // bin_seconds) + 1
    xs = [i * bin_seconds for i in range(n)]
    rates: dict[str, list[float]] = {c: [0.0] * n for c in rec.classes}
    for cls, at in delivered_at:
        i = int((at - start) // bin_seconds)
        if cls in rates and 0 <= i < n:
            rates[cls][i] += 1.0 / bin_seconds
    qx = [q.at - start for q in rec.queue]
    depths = {c: [int(q.depths.get(c, 0)) for q in rec.queue] for c in rec.classes}
    return xs, rates, qx, depths


def to_json(rec: Recording) -> dict[str, Any]:
    """A recording as plain JSON data, kept next to the report so it can be recomputed."""
    return {
        "mode": rec.mode,
        "scenario": rec.scenario,
        "classes": list(rec.classes),
        "sent": [[s.traffic_class, s.customer, s.accepted_at, s.outcome, s.message_id] for s in rec.sent],
        "fates": [
            [f.message_id, f.state, f.delivered_at, f.handled_by_bad, f.replay_count]
            for f in rec.fates.values()
        ],
        "discards": [
            [d.message_id, d.revision, d.reason, d.discarded_at, d.replayed_at] for d in rec.discards
        ],
        "marks": [[m.at, m.kind, m.label] for m in rec.marks],
        "bad_windows": [[w.traffic_class, w.start, w.end] for w in rec.bad_windows],
        "queue": [[q.at, dict(q.depths)] for q in rec.queue],
        "bad_revisions": sorted(rec.bad_revisions),
        "smsc_duplicates": rec.smsc_duplicates,
        "tiers_beyond_first_with_bad": list(rec.tiers_beyond_first_with_bad),
        "params": dict(rec.params),
    }


def from_json(data: Mapping[str, Any]) -> Recording:
    """The recording `to_json` wrote."""
    return Recording(
        mode=data["mode"],
        scenario=data["scenario"],
        classes=tuple(data["classes"]),
        sent=[Sent(*row) for row in data["sent"]],
        fates={row[0]: Fate(*row) for row in data["fates"]},
        discards=[DiscardRow(*row) for row in data["discards"]],
        marks=[Mark(*row) for row in data["marks"]],
        bad_windows=[Window(*row) for row in data["bad_windows"]],
        queue=[QueueSample(at, depths) for at, depths in data["queue"]],
        bad_revisions=frozenset(data["bad_revisions"]),
        smsc_duplicates=int(data["smsc_duplicates"]),
        tiers_beyond_first_with_bad=tuple(data["tiers_beyond_first_with_bad"]),
        params=data["params"],
    )
