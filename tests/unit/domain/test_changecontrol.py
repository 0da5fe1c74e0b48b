"""Change control with a fake clock: deploy windows (overnight, daylight saving), freezes, approvals.

The rollout asks change control only before a tier starts a release: the last tests show that a
rollback, an abort and the fleet policy act outside every window and in a freeze.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from tests.unit.domain.rollout_cases import R_NEW, R_OLD, T0, ctx, ready, step
from tests.unit.domain.test_release_gate import (
    at,
    baking_ready,
    failing,
    halted_peer,
    running_new,
    signed,
    tier,
)

from tiergate.api.v1alpha1 import ApprovalStatus, DeployWindow, Phase, SenderTierSpec
from tiergate.domain import changecontrol as cc
from tiergate.domain.reasons import Reason
from tiergate.domain.rollout import IDLE_SECONDS, Requests, Source, decide

SYDNEY = "Australia/Sydney"


def window(days: str, start: str, end: str, zone: str = "UTC") -> DeployWindow:
    return DeployWindow.model_validate({"days": days.split(), "start": start, "end": end, "timeZone": zone})


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- windows ------------------------------------------------------------------------------

OFFICE = window("Mon Tue Wed Thu", "09:00", "15:00")
NIGHT = window("Mon", "22:00", "02:00")  # Monday night into Tuesday


@pytest.mark.parametrize(
    ("w", "now", "open_"),
    [
        (OFFICE, utc(2026, 11, 30, 9, 0), True),  # Monday, the opening minute
        (OFFICE, utc(2026, 11, 30, 8, 59, 59), False),
        (OFFICE, utc(2026, 11, 30, 14, 59, 59), True),
        (OFFICE, utc(2026, 11, 30, 15, 0), False),  # the end is not inside
        (OFFICE, utc(2026, 12, 4, 10, 0), False),  # Friday
        (NIGHT, utc(2026, 11, 30, 23, 0), True),  # Monday night
        (NIGHT, utc(2026, 12, 1, 1, 59), True),  # Tuesday small hours: Monday's window still
        (NIGHT, utc(2026, 12, 1, 2, 0), False),
        (NIGHT, utc(2026, 11, 30, 1, 0), False),  # Monday small hours belong to Sunday's night
        (NIGHT, utc(2026, 12, 1, 23, 0), False),  # Tuesday night: no window opens on Tuesday
        (window("Sun", "00:00", "24:00"), utc(2026, 11, 29, 23, 59), True),
        (window("Sun", "00:00", "24:00"), utc(2026, 11, 30, 0, 0), False),
        (window("Fri", "22:00", "00:00"), utc(2026, 11, 27, 23, 30), True),
        (window("Fri", "22:00", "00:00"), utc(2026, 11, 28, 0, 0), False),
    ],
)
def test_window_open(w: DeployWindow, now: datetime, open_: bool) -> None:
    assert cc.window_open(w, now) is open_


def test_a_window_is_read_on_its_own_zones_wall_clock() -> None:
    w = window("Mon Tue Wed Thu", "09:00", "15:00", SYDNEY)
    assert cc.window_open(w, utc(2026, 11, 29, 22, 0))  # Monday 09:00 AEDT = Sunday 22:00 UTC
    assert not cc.window_open(w, utc(2026, 11, 30, 4, 0))  # Monday 15:00 AEDT


@pytest.mark.parametrize(
    ("w", "now", "opens"),
    [
        # Friday 04:00 in Sydney: the next Mon-Thu window is Monday 09:00 AEDT.
        (
            window("Mon Tue Wed Thu", "09:00", "15:00", SYDNEY),
            utc(2026, 12, 3, 17, 0),
            "2026-12-07T09:00:00+11:00",
        ),
        # Overnight: Monday 21:00 waits for Monday 22:00, not for Tuesday.
        (NIGHT, utc(2026, 11, 30, 21, 0), "2026-11-30T22:00:00+00:00"),
        (NIGHT, utc(2026, 12, 1, 2, 0), "2026-12-07T22:00:00+00:00"),
        # Spring forward (Sydney, 4 Oct 2026: 02:00 AEST becomes 03:00 AEDT): 02:30 never shows on
        # the clock, so the window opens at the jump, 03:00 AEDT.
        (window("Sun", "02:30", "04:00", SYDNEY), utc(2026, 10, 1, 0, 0), "2026-10-04T03:00:00+11:00"),
        # Fall back (Sydney, 5 Apr 2026: 03:00 AEDT becomes 02:00 AEST): 02:30 shows twice; the
        # window opens at the first.
        (window("Sun", "02:30", "04:00", SYDNEY), utc(2026, 4, 1, 0, 0), "2026-04-05T02:30:00+11:00"),
        # London leaves summer time on 25 Oct 2026: Monday 09:00 is 09:00 UTC, no longer 08:00.
        (
            window("Mon", "09:00", "17:00", "Europe/London"),
            utc(2026, 10, 23, 12, 0),
            "2026-10-26T09:00:00+00:00",
        ),
        (
            window("Mon", "09:00", "17:00", "Europe/London"),
            utc(2026, 10, 16, 12, 0),
            "2026-10-19T09:00:00+01:00",
        ),
        # A window that lies wholly in the skipped hour never opens that day: the next Sunday.
        (window("Sun", "02:15", "02:45", SYDNEY), utc(2026, 10, 1, 0, 0), "2026-10-11T02:15:00+11:00"),
    ],
    ids=[
        "brief",
        "overnight-same-day",
        "overnight-next-week",
        "spring-forward",
        "fall-back",
        "gmt",
        "bst",
        "gap",
    ],
)
def test_next_opening(w: DeployWindow, now: datetime, opens: str) -> None:
    found = cc.next_opening([w], now)
    assert found is not None
    when, which = found
    assert when.isoformat() == opens and which is w
    # Aware arithmetic in one zone is wall-clock arithmetic: step back a real second in UTC.
    assert cc.window_open(w, when) and not cc.window_open(w, when.astimezone(UTC) - timedelta(seconds=1))


def test_the_earliest_of_several_windows_opens_next() -> None:
    windows = [window("Mon", "09:00", "10:00"), window("Sat", "09:00", "10:00", SYDNEY)]
    found = cc.next_opening(windows, utc(2026, 11, 27, 12, 0))  # Friday 12:00 UTC
    assert found is not None and found[0].isoformat() == "2026-11-28T09:00:00+11:00"


def test_no_windows_means_any_time() -> None:
    assert cc.inside([], T0)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"timeZone": "Mars/Olympus"}, "unknown time zone"),
        ({"timeZone": ""}, "unknown time zone"),
        ({"start": "9:00"}, "start must be HH:MM"),
        ({"end": "24:30"}, "end must be HH:MM"),
        ({"end": "09:00"}, "start and end must differ"),
        ({"days": ["Monday"]}, "days.0"),
    ],
)
def test_a_bad_window_is_refused_by_the_model(raw: dict[str, Any], problem: str) -> None:
    good = {"days": ["Mon"], "start": "09:00", "end": "15:00", "timeZone": "UTC"}
    with pytest.raises(ValidationError, match=problem):
        DeployWindow.model_validate(good | raw)


# --- freezes and approvals ----------------------------------------------------------------


def test_freeze_from_annotations() -> None:
    assert cc.freeze_from(None, None, None) is None
    f = cc.freeze_from("2026-11-27T13:00:00Z", "black friday", "alice")
    assert f == cc.Freeze(utc(2026, 11, 27, 13, 0), "black friday", "alice")
    assert cc.frozen(f, T0) and not cc.frozen(f, utc(2026, 11, 27, 13, 0))
    unreadable = cc.freeze_from("next tuesday", "x", None)
    assert (
        unreadable is not None
        and unreadable.until is None
        and cc.frozen(unreadable, T0 + timedelta(days=999))
    )


def spec(**extra: Any) -> SenderTierSpec:
    return tier(**extra).spec


def test_refusal_order_freeze_then_window_then_approval() -> None:
    gated = spec(
        approval="Required",
        deployWindows=[{"days": ["Mon"], "start": "09:00", "end": "10:00", "timeZone": "UTC"}],
    )
    freeze = cc.Freeze(T0 + timedelta(hours=1), "incident 42", "alice")
    r = cc.refusal("standard", gated, "R", T0, freeze=freeze)
    assert r is not None and r.reason is Reason.FROZEN and r.recheck_after == 3600
    assert r.why == f"the fleet is frozen by alice until {(T0 + timedelta(hours=1)).isoformat()}: incident 42"
    r = cc.refusal("standard", gated, "R", T0)
    assert r is not None and r.reason is Reason.OUTSIDE_WINDOW
    assert "next window opens 2026-11-30T09:00:00+00:00 (UTC)" in r.why
    assert "also needs approval (tiergate approve standard)" in r.why
    monday = utc(2026, 11, 30, 9, 30)
    r = cc.refusal("standard", gated, "R", monday)
    assert r is not None and r.reason is Reason.AWAITING_APPROVAL and r.recheck_after is None
    assert cc.refusal("standard", gated, "R", monday, approved_release="R") is None
    assert (
        cc.refusal("standard", gated, "R", monday, recorded=ApprovalStatus(release="R", by="a", at=T0))
        is None
    )


def test_an_approval_for_release_a_does_not_approve_release_b() -> None:
    gated = spec(approval="Required")
    recorded = ApprovalStatus(release="A", by="alice", at=T0)
    for kw in ({"approved_release": "A"}, {"recorded": recorded}):
        r = cc.refusal("standard", gated, "B", T0, **kw)  # type: ignore[arg-type]
        assert r is not None and r.reason is Reason.AWAITING_APPROVAL and "release B" in r.why


def test_approval_not_required_by_default() -> None:
    assert cc.refusal("standard", spec(), "R", T0) is None


# --- the gate in the rollout --------------------------------------------------------------

CLOSED = [{"days": ["Mon"], "start": "09:00", "end": "10:00", "timeZone": SYDNEY}]  # T0 is a Friday


def test_a_release_waits_for_approval_then_starts_and_the_approval_is_recorded() -> None:
    c = ctx(tier(status=signed(), order=0, name="bulk", approval="Required"))
    c, d = step(c)
    assert d.status.phase is Phase.WAITING and d.status.message == (
        f"Waiting: release {R_NEW} awaits approval (tiergate approve bulk)"
    )
    assert d.deployment.source is Source.SIGNED_OFF and d.deployment.revision == R_OLD
    assert [(e.reason, e.message) for e in d.events] == [
        (
            Reason.AWAITING_APPROVAL,
            f"Release {R_NEW} waits: release {R_NEW} awaits approval (tiergate approve bulk)",
        )
    ]
    ready_cond = next(x for x in d.status.conditions if x.type == "Ready")
    assert ready_cond.reason == "AwaitingApproval"
    _, again = step(c)
    assert again.events == ()  # the same wait is announced once
    c, d = step(c, requests=Requests(approved_release=R_NEW, approved_by="alice"), now=at(60))
    assert d.status.phase is Phase.PROGRESSING and d.deployment.revision == R_NEW
    assert d.status.approval == ApprovalStatus(release=R_NEW, by="alice", at=at(60))
    assert [e.reason for e in d.events] == [Reason.APPROVED, Reason.ROLLOUT_STARTED]


def test_a_release_outside_the_window_waits_with_the_next_opening() -> None:
    d = decide(ctx(tier(status=signed(), order=0, name="bulk", deployWindows=CLOSED)))
    assert d.status.phase is Phase.WAITING
    assert d.status.message == (
        "Waiting: outside its deploy windows; next window opens 2026-11-30T09:00:00+11:00 (Australia/Sydney)"
    )
    assert d.deployment.revision == R_OLD and d.requeue_after == IDLE_SECONDS
    opens = datetime.fromisoformat("2026-11-30T09:00:00+11:00")
    near = decide(
        ctx(
            tier(status=signed(), order=0, name="bulk", deployWindows=CLOSED),
            now=opens - timedelta(seconds=3),
        )
    )
    assert near.requeue_after == pytest.approx(3.05)
    started = decide(ctx(tier(status=signed(), order=0, name="bulk", deployWindows=CLOSED), now=opens))
    assert started.status.phase is Phase.PROGRESSING


def test_a_freeze_holds_the_start_and_says_until_when_and_why() -> None:
    freeze = cc.Freeze(at(600), "peak season", "carol")
    d = decide(ctx(tier(status=signed(), order=0, name="bulk"), requests=Requests(freeze=freeze)))
    assert d.status.phase is Phase.WAITING and d.events[0].reason is Reason.FROZEN
    assert (
        d.status.message == f"Waiting: the fleet is frozen by carol until {at(600).isoformat()}: peak season"
    )
    thawed = decide(
        ctx(tier(status=signed(), order=0, name="bulk"), now=at(600), requests=Requests(freeze=freeze))
    )
    assert thawed.status.phase is Phase.PROGRESSING


def test_a_tier_signed_off_at_its_spec_is_not_held() -> None:
    held = tier(status=signed(R_NEW), order=0, name="bulk", deployWindows=CLOSED)
    d = decide(ctx(held, deployment=ready(R_NEW), requests=FROZEN))
    assert d.status.phase is Phase.SIGNED_OFF


HELD = {"deployWindows": CLOSED, "approval": "Required"}
FROZEN = Requests(freeze=cc.Freeze(None, "incident", "dave"))


def test_a_failing_bake_rolls_back_outside_the_window_and_in_a_freeze() -> None:
    status = baking_ready().tier.status.model_dump(by_alias=True, mode="json", exclude_none=True)
    c = ctx(tier(status=status, order=0, name="bulk", **HELD), deployment=ready(R_NEW), requests=FROZEN)
    c, d = step(c, observations=failing())
    c, d = step(c, now=at(10), observations=failing())
    assert d.status.phase is Phase.ROLLED_BACK
    assert d.deployment.source is Source.SIGNED_OFF and d.deployment.revision == R_OLD


def test_an_abort_rolls_back_outside_the_window_and_in_a_freeze() -> None:
    baking = {**signed(), "phase": "Baking", "rollout": {"revision": R_NEW, "startedAt": T0.isoformat()}}
    frozen_abort = Requests(abort="bob@t2", freeze=FROZEN.freeze)
    _, d = step(ctx(tier(status=baking, **HELD), deployment=ready(R_NEW), requests=frozen_abort))
    assert d.status.phase is Phase.ROLLED_BACK and d.status.halt and d.status.halt.check == "abort"


def test_the_fleet_policy_rolls_back_outside_the_window_and_in_a_freeze() -> None:
    c = ctx(
        tier(status=running_new(), order=2, name="priority", **HELD),
        deployment=ready(R_NEW),
        peers=(halted_peer(),),
        requests=FROZEN,
    )
    _, d = step(c)
    assert d.status.phase is Phase.ROLLED_BACK and d.deployment.revision == R_OLD


def test_a_retry_waits_for_the_freeze() -> None:
    halted = {
        **signed(),
        "phase": "RolledBack",
        "revision": R_NEW,
        "halt": {"check": "abort", "revision": R_NEW, "windowStart": T0.isoformat(), "at": T0.isoformat()},
    }
    c = ctx(
        tier(status=halted, order=0, name="bulk"), requests=Requests(retry="eve@t3", freeze=FROZEN.freeze)
    )
    _, d = step(c)
    assert d.status.phase is Phase.ROLLED_BACK and "retry" not in d.status.handled_requests
    _, d = step(c, requests=Requests(retry="eve@t3"))
    assert d.status.phase is Phase.PROGRESSING
