"""Release identity: which release a tier asks for, and what its history says about a release.

A revision is one tier's pod template; a release is what the fleet promotes from tier to tier. The
gate, the watch and the fleet policy all speak of releases, and all read the same record: the tier's
``status.history``, kept in the API server so a restarted operator reads what the last one wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from tiergate.api.v1alpha1 import HistoryEntry, SenderTierSpec

HISTORY_LIMIT = 10


def release_of(spec: SenderTierSpec, revision: str) -> str:
    """The release key of a spec: ``spec.release`` when set, else its pod-template hash."""
    return spec.release or revision


def revoked_at(entry: HistoryEntry) -> datetime | None:
    """When this run of a release stopped vouching for it (it halted or was rolled back), or None."""
    marks = [t for t in (entry.halted_at, entry.rolled_back_at) if t is not None]
    return max(marks) if marks else None


def vouches(history: Sequence[HistoryEntry], release: str) -> bool:
    """True when the tier has signed ``release`` off and has not halted on it or left it since."""
    signed = [e.signed_off_at for e in history if e.release == release and e.signed_off_at is not None]
    if not signed:
        return False
    last = max(signed)
    return not any(
        (gone := revoked_at(e)) is not None and gone >= last for e in history if e.release == release
    )


def last_good_before(history: Sequence[HistoryEntry], release: str) -> str | None:
    """The revision of the newest signed-off release other than ``release`` that was never revoked."""
    for entry in reversed(history):
        if entry.release != release and entry.signed_off_at is not None and revoked_at(entry) is None:
            return entry.revision
    return None


def release_of_revision(history: Sequence[HistoryEntry], revision: str | None) -> str | None:
    """The release a revision of this tier ran as, by its newest history entry, or None."""
    for entry in reversed(history):
        if entry.revision == revision:
            return entry.release
    return None


def started(
    history: Sequence[HistoryEntry], release: str, revision: str, now: datetime
) -> list[HistoryEntry]:
    """The history with a new run of ``release`` appended, trimmed to the last ``HISTORY_LIMIT``."""
    entry = HistoryEntry(release=release, revision=revision, startedAt=now)
    return [*history, entry][-HISTORY_LIMIT:]


def marked(
    history: Sequence[HistoryEntry], revision: str, mark: Callable[[HistoryEntry], HistoryEntry]
) -> list[HistoryEntry]:
    """The history with ``mark`` applied to the newest run of ``revision``; unchanged if none."""
    out = list(history)
    for i in range(len(out) - 1, -1, -1):
        if out[i].revision == revision:
            out[i] = mark(out[i])
            break
    return out


def entry_of(history: Sequence[HistoryEntry], revision: str) -> HistoryEntry | None:
    """The newest run of ``revision``, or None."""
    for entry in reversed(history):
        if entry.revision == revision:
            return entry
    return None
