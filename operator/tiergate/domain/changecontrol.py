"""Change control: may this tier start a release now? Approved, inside a deploy window, not frozen.

The rollout asks :func:`refusal` once, just before a tier starts a release; rollbacks, aborts and
the fleet policy never ask, so they act at any hour and in any freeze. Windows are wall-clock hours
in an IANA zone (zoneinfo), so they follow daylight saving: a window that opens inside the hour a
spring-forward night skips opens at the jump, and one that opens inside the hour a fall-back night
repeats opens at its first occurrence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tiergate.api.v1alpha1 import Approval, ApprovalStatus, DeployWindow, SenderTierSpec, Weekday
from tiergate.domain.reasons import Reason

WEEKDAYS = tuple(Weekday)
"""Monday first, as :meth:`datetime.weekday` counts."""

SEARCH_DAYS = 15
"""How far ahead the next opening is looked for: two weeks (a week's one opening may fall in a
daylight-saving gap), and a day more."""


@dataclass(frozen=True)
class Freeze:
    """A fleet freeze as its annotations carry it; ``until`` None holds until it is lifted."""

    until: datetime | None
    why: str
    by: str


@dataclass(frozen=True)
class Refusal:
    """Why a release may not start now, and when the clock alone may change the answer."""

    reason: Reason
    why: str
    recheck_after: float | None = None


def freeze_from(until: str | None, why: str | None, by: str | None) -> Freeze | None:
    """The freeze the annotations describe, or None; an unreadable ``until`` holds until lifted."""
    if until is None and why is None:
        return None
    at: datetime | None = None
    if until:
        try:
            at = datetime.fromisoformat(until.replace("Z", "+00:00"))
        except ValueError:
            at = None
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    return Freeze(until=at, why=why or "", by=by or "")


def frozen(freeze: Freeze | None, now: datetime) -> bool:
    """True while ``freeze`` holds at ``now``."""
    return freeze is not None and (freeze.until is None or now < freeze.until)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def window_open(window: DeployWindow, now: datetime) -> bool:
    """True when ``now`` falls inside ``window`` (by the wall clock of its zone)."""
    local = now.astimezone(ZoneInfo(window.time_zone))
    minute = local.hour * 60 + local.minute
    start, end = _minutes(window.start), _minutes(window.end)
    today = WEEKDAYS[local.weekday()]
    if start < end:
        return today in window.days and start <= minute < end
    yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
    return (today in window.days and minute >= start) or (yesterday in window.days and minute < end)


def inside(windows: Sequence[DeployWindow], now: datetime) -> bool:
    """True when there are no windows (any time will do) or ``now`` is inside one of them."""
    return not windows or any(window_open(w, now) for w in windows)


def _opening(day: date, hhmm: str, zone: ZoneInfo) -> datetime:
    """The first instant the wall clock of ``zone`` reads ``hhmm`` or later on ``day``."""
    naive = datetime.combine(day, time(*divmod(_minutes(hhmm), 60)))
    first = naive.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive:
        return first
    # A time the clocks skip: the window opens when they jump past it.
    ends = sorted(int(naive.replace(tzinfo=zone, fold=f).timestamp()) for f in (0, 1))
    low, high = ends
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= naive:
            high = mid
        else:
            low = mid
    return datetime.fromtimestamp(high, zone)


def next_opening(windows: Sequence[DeployWindow], now: datetime) -> tuple[datetime, DeployWindow] | None:
    """The next time one of ``windows`` opens after ``now`` (in that window's zone), or None."""
    now = now.astimezone(UTC)
    found: list[tuple[datetime, DeployWindow]] = []
    for window in windows:
        zone = ZoneInfo(window.time_zone)
        today = now.astimezone(zone).date()
        for ahead in range(SEARCH_DAYS):
            day = today + timedelta(days=ahead)
            if WEEKDAYS[day.weekday()] not in window.days:
                continue
            at = _opening(day, window.start, zone)
            if at > now and window_open(window, at):
                found.append((at, window))
                break
    return min(found, key=lambda pair: pair[0].astimezone(UTC)) if found else None


def needs_approval(spec: SenderTierSpec, recorded: ApprovalStatus | None, release: str) -> bool:
    """True when this tier requires approval and none is recorded for ``release``."""
    return spec.approval is Approval.REQUIRED and (recorded is None or recorded.release != release)


def refusal(
    tier: str,
    spec: SenderTierSpec,
    release: str,
    now: datetime,
    *,
    recorded: ApprovalStatus | None = None,
    approved_release: str | None = None,
    freeze: Freeze | None = None,
) -> Refusal | None:
    """Why ``tier`` may not start ``release`` at ``now``, or None when it may.

    A freeze comes first, then the windows, then the approval: a release applied after hours says
    when it may go, and asks for approval once it could start (an approval may be given earlier).
    """
    if frozen(freeze, now):
        assert freeze is not None
        by = f" by {freeze.by}" if freeze.by else ""
        why = f": {freeze.why}" if freeze.why else ""
        if freeze.until is None:
            return Refusal(Reason.FROZEN, f"the fleet is frozen{by} until it is unfrozen{why}")
        left = (freeze.until.astimezone(UTC) - now.astimezone(UTC)).total_seconds()
        return Refusal(Reason.FROZEN, f"the fleet is frozen{by} until {freeze.until.isoformat()}{why}", left)
    unapproved = needs_approval(spec, recorded, release) and approved_release != release
    if not inside(spec.deploy_windows, now):
        opening = next_opening(spec.deploy_windows, now)
        also = f"; release {release} also needs approval (tiergate approve {tier})" if unapproved else ""
        if opening is None:
            return Refusal(Reason.OUTSIDE_WINDOW, f"outside its deploy windows, none of which opens{also}")
        at, window = opening
        text = f"outside its deploy windows; next window opens {at.isoformat()} ({window.time_zone}){also}"
        return Refusal(
            Reason.OUTSIDE_WINDOW, text, (at.astimezone(UTC) - now.astimezone(UTC)).total_seconds()
        )
    if unapproved:
        return Refusal(
            Reason.AWAITING_APPROVAL, f"release {release} awaits approval (tiergate approve {tier})"
        )
    return None
