"""Release identity, the watch after sign-off and the fleet policy, table-driven with a fake clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from tests.unit.domain.rollout_cases import NEW, R_NEW, R_OLD, T0, ctx, ready, step

from tiergate.api.v1alpha1 import During, HistoryEntry, OnFleetHalt, Phase, SenderTier
from tiergate.domain import release as rel
from tiergate.domain.checks import Observation, Result
from tiergate.domain.rollout import (
    FLEET_ORDER_POLL,
    FLEET_ORDER_WAIT,
    Context,
    Peer,
    Requests,
    Source,
    decide,
    evaluation_due,
)

GATE = {"progressDeadline": "60s", "bake": "30s", "interval": "10s", "failureLimit": 2, "settle": "0s"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def entry(rev: str, release: str | None = None, **marks: float) -> dict[str, Any]:
    out: dict[str, Any] = {"release": release or rev, "revision": rev, "startedAt": at(-100).isoformat()}
    for key, seconds in marks.items():
        out[key] = at(seconds).isoformat()
    return out


def hist(*entries: dict[str, Any]) -> tuple[HistoryEntry, ...]:
    return tuple(HistoryEntry.model_validate(e) for e in entries)


def tier(
    template: dict[str, Any] = NEW,
    status: dict[str, Any] | None = None,
    order: int = 1,
    name: str = "standard",
    **spec: Any,
) -> SenderTier:
    gate = {**GATE, "readinessOnly": True, **spec.pop("gate", {})}
    return SenderTier.model_validate(
        {
            "metadata": {"name": name, "namespace": "ns", "generation": 3, "uid": "u"},
            "spec": {
                "fleet": "f",
                "order": order,
                "trafficClass": name,
                "replicas": 2,
                "template": template,
                "healthGate": gate,
                **spec,
            },
            "status": status or {},
        }
    )


def signed(rev: str = R_OLD, *extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "phase": "SignedOff",
        "revision": rev,
        "signedOffRevision": rev,
        "currentRevision": rev,
        "history": [*extra, entry(rev, signedOffAt=-50)],
    }


def passing() -> tuple[Observation, ...]:
    return (Observation("pods-ready", Result.PASS, 2.0),)


def failing() -> tuple[Observation, ...]:
    return (
        Observation("pods-ready", Result.PASS, 2.0),
        Observation("leak", Result.FAIL, 9.0, "<= 1", "q", "9 > 1"),
    )


def bulk(**kw: Any) -> Peer:
    base: dict[str, Any] = {"spec_revision": R_NEW, "signed_off_revision": R_NEW, "phase": Phase.SIGNED_OFF}
    base |= kw
    return Peer("bulk", 0, release=base.pop("release", base["spec_revision"]), **base)


# --- the history helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "vouches"),
    [
        ((), False),
        ((entry(R_NEW),), False),
        ((entry(R_NEW, signedOffAt=-10),), True),
        ((entry(R_NEW, signedOffAt=-10, haltedAt=-5),), False),
        ((entry(R_NEW, signedOffAt=-10, rolledBackAt=-5),), False),
        ((entry(R_NEW, signedOffAt=-30, haltedAt=-20), entry(R_NEW, signedOffAt=-10)), True),
        ((entry(R_OLD, signedOffAt=-10),), False),
        ((entry("a1", "R", signedOffAt=-10), entry("a2", "R")), True),
    ],
    ids=["none", "started", "signed", "halted-since", "rolled-back-since", "retried", "other", "same-key"],
)
def test_vouches(entries: tuple[dict[str, Any], ...], vouches: bool) -> None:
    release = "R" if any(e["release"] == "R" for e in entries) else R_NEW
    assert rel.vouches(hist(*entries), release) is vouches


def test_last_good_before_skips_the_release_and_revoked_runs() -> None:
    h = hist(
        entry("a", signedOffAt=-90),
        entry("b", signedOffAt=-80, haltedAt=-70),
        entry("c", "R", signedOffAt=-60),
        entry("d", "R", signedOffAt=-50),
    )
    assert rel.last_good_before(h, "R") == "a"
    assert rel.last_good_before(h, "S") == "d"
    assert rel.started(h * 3, "R", "e", T0)[-1].revision == "e"
    assert len(rel.started(h * 3, "R", "e", T0)) == rel.HISTORY_LIMIT


# --- the release gate ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "starts", "says"),
    [
        (bulk(history=hist(entry(R_NEW, signedOffAt=-5))), True, ""),
        (bulk(), True, ""),  # no history yet: signed off at its spec vouches for that release
        (
            bulk(spec_revision=R_OLD, signed_off_revision=R_OLD, history=hist(entry(R_OLD, signedOffAt=-5))),
            False,
            f"apply release {R_NEW} to tier bulk first",
        ),
        (
            bulk(signed_off_revision=R_OLD, phase=Phase.BAKING, history=hist(entry(R_NEW))),
            False,
            f"has not signed off release {R_NEW} yet",
        ),
        (
            bulk(
                spec_revision="r4",
                release="r4",
                signed_off_revision=R_NEW,
                phase=Phase.BAKING,
                history=hist(entry(R_NEW, signedOffAt=-20), entry("r4")),
            ),
            True,
            "",
        ),
        (
            bulk(
                spec_revision="r4",
                release="r4",
                signed_off_revision=R_OLD,
                phase=Phase.BAKING,
                history=hist(entry(R_OLD, signedOffAt=-90), entry(R_NEW), entry("r4")),
            ),
            False,
            f"has not run release {R_NEW}",
        ),
        (
            bulk(phase=Phase.ROLLED_BACK, history=hist(entry(R_NEW, signedOffAt=-20, haltedAt=-5))),
            False,
            "is halted",
        ),
        (
            bulk(history=hist(entry(R_NEW, signedOffAt=-20, rolledBackAt=-5), entry(R_OLD, signedOffAt=-1))),
            False,
            f"has not signed off release {R_NEW} yet",
        ),
    ],
    ids=[
        "lower-signed-R",
        "lower-signed-no-history",
        "applied-to-priority-alone",
        "lower-still-baking-R",
        "lower-signed-R-then-moved-on",
        "lower-superseded-mid-bake",
        "lower-halted",
        "lower-revoked-R",
    ],
)
def test_release_gate(peer: Peer, starts: bool, says: str) -> None:
    d = decide(ctx(tier(status=signed()), peers=(peer,)))
    if starts:
        assert d.status.phase is Phase.PROGRESSING and d.deployment.revision == R_NEW
        assert d.status.history[-1].release == R_NEW and d.status.history[-1].started_at == T0
        return
    assert d.status.phase is Phase.WAITING and d.status.waiting_for == "bulk"
    assert says in (d.status.message or "")
    assert d.deployment.source is Source.SIGNED_OFF and d.deployment.revision == R_OLD


def test_waiting_names_spec_release_when_templates_differ() -> None:
    lower = bulk(spec_revision=R_OLD, signed_off_revision=R_OLD, history=hist(entry(R_OLD, signedOffAt=-5)))
    d = decide(ctx(tier(status=signed()), peers=(lower,)))
    assert "set the same spec.release" in (d.status.message or "")
    assert d.events[0].reason.value == "ReleaseNotSignedOffBelow"
    d = decide(ctx(tier(status=signed(), release="v2"), peers=(lower,)))
    assert "apply release v2 to tier bulk first" in (d.status.message or "")
    assert "spec.release" not in (d.status.message or "")


def test_a_change_that_keeps_the_release_key_needs_no_new_sign_off_below() -> None:
    lower = bulk(spec_revision="b1", release="v2", history=hist(entry("b1", "v2", signedOffAt=-5)))
    own = signed(R_OLD)
    own["history"] = [entry(R_OLD, "v2", signedOffAt=-50)]
    d = decide(ctx(tier(status=own, release="v2"), peers=(lower,)))
    assert d.status.phase is Phase.PROGRESSING and d.status.release == "v2"


def test_the_lowest_order_tier_waits_for_no_one() -> None:
    d = decide(ctx(tier(status=signed(), order=0, name="bulk")))
    assert d.status.phase is Phase.PROGRESSING


def test_untested_release_override_lets_it_through_once_and_is_recorded() -> None:
    lower = bulk(spec_revision=R_OLD, signed_off_revision=R_OLD, history=hist(entry(R_OLD, signedOffAt=-5)))
    c = ctx(tier(status=signed()), peers=(lower,), requests=Requests(untested_release="oncall@t1"))
    c, d = step(c)
    assert d.status.phase is Phase.PROGRESSING
    assert d.status.untested_release is not None
    assert (d.status.untested_release.release, d.status.untested_release.by) == (R_NEW, "oncall@t1")
    assert d.status.handled_requests["untested_release"] == "oncall@t1"
    assert [e.reason.value for e in d.events] == ["UntestedRelease", "RolloutStarted"]
    assert d.events[0].warning
    _, d = step(c, now=at(1))
    assert d.status.phase is Phase.PROGRESSING, "the override still covers this release mid-rollout"
    assert not d.events


def test_the_override_covers_only_the_release_it_was_given_for() -> None:
    lower = bulk(spec_revision=R_OLD, signed_off_revision=R_OLD, history=hist(entry(R_OLD, signedOffAt=-5)))
    status = {
        **signed(),
        "untestedRelease": {"release": "something-else", "by": "x", "at": T0.isoformat()},
        "handledRequests": {"untested_release": "x"},
    }
    d = decide(ctx(tier(status=status), peers=(lower,), requests=Requests(untested_release="x")))
    assert d.status.phase is Phase.WAITING


def test_a_rolling_tier_yields_when_the_lower_tier_revokes_the_release() -> None:
    rolling = {**signed(), "phase": "Baking", "revision": R_NEW, "currentRevision": R_NEW}
    rolling["rollout"] = {"revision": R_NEW, "startedAt": T0.isoformat()}
    rolling["history"] = [*rolling["history"], entry(R_NEW)]
    # bulk signed R_NEW off and then moved on: nothing to yield for
    moved = bulk(spec_revision="r4", release="r4", history=hist(entry(R_NEW, signedOffAt=-20), entry("r4")))
    d = decide(ctx(tier(status=rolling), deployment=ready(R_NEW), peers=(moved,)))
    assert d.status.phase is Phase.BAKING


# --- the watch after sign-off -----------------------------------------------------------------


def baking_ready(gate: dict[str, Any] | None = None) -> Context:
    status = {**signed(), "phase": "Baking", "revision": R_NEW, "currentRevision": R_NEW}
    status["rollout"] = {
        "revision": R_NEW,
        "startedAt": at(-40).isoformat(),
        "bakeSince": at(-30).isoformat(),
    }
    status["history"] = [*status["history"], entry(R_NEW)]
    return ctx(
        tier(status=status, order=0, name="bulk", gate=gate or {"watch": "60s"}), deployment=ready(R_NEW)
    )


def test_sign_off_starts_the_watch_and_the_phase_stays_signed_off() -> None:
    c, d = step(baking_ready(), observations=passing())
    assert d.status.phase is Phase.SIGNED_OFF and d.save_signed_off
    assert d.status.rollout and d.status.rollout.watch_until == at(60)
    assert d.status.history[-1].signed_off_at == T0
    watching = next(x for x in d.status.conditions if x.type == "Watching")
    assert watching.status == "True" and watching.reason == "Watching"
    assert "watching until" in (d.status.message or "")
    assert d.requeue_after <= 10
    assert not evaluation_due(replace(c, now=at(5)))
    assert evaluation_due(replace(c, now=at(10)))


@pytest.mark.parametrize(
    ("observations", "phase", "failures"),
    [
        ((passing(), passing()), Phase.SIGNED_OFF, 0),
        ((failing(), passing()), Phase.SIGNED_OFF, 0),
        ((failing(),), Phase.SIGNED_OFF, 1),
        ((failing(), failing()), Phase.ROLLED_BACK, 2),
    ],
    ids=["passing", "failure-then-pass", "one-failure", "limit"],
)
def test_watch_evaluations(
    observations: tuple[tuple[Observation, ...], ...], phase: Phase, failures: int
) -> None:
    c, d = step(baking_ready(), observations=passing())
    for i, obs in enumerate(observations, start=1):
        c, d = step(c, now=at(10 * i), observations=obs)
    assert d.status.phase is phase
    if phase is Phase.SIGNED_OFF:
        assert d.status.rollout and d.status.rollout.consecutive_failures == failures
        return
    halt = d.status.halt
    assert halt is not None and halt.during is During.WATCH and halt.check == "leak"
    assert halt.release == R_NEW and halt.revision == R_NEW and halt.cause is None
    assert d.status.signed_off_revision == R_OLD, "back to the previous signed-off release"
    assert d.deployment.source is Source.SIGNED_OFF and d.deployment.revision == R_OLD
    assert d.status.history[-1].halted_at == at(20) and d.status.history[-1].rolled_back_at == at(20)
    assert "WatchFailed" in {x.reason for x in d.status.conditions if x.type == "Halted"}


def test_inconclusive_watch_halts_past_its_limit() -> None:
    gate = {"watch": "600s", "inconclusiveLimit": "25s"}
    inconclusive = (Observation("pods-ready", Result.PASS, 2.0), Observation("leak", Result.INCONCLUSIVE))
    c, d = step(baking_ready(gate), observations=passing())
    for i in range(1, 4):
        c, d = step(c, now=at(10 * i), observations=inconclusive)
        assert d.status.phase is Phase.SIGNED_OFF
    c, d = step(c, now=at(40), observations=inconclusive)
    assert d.status.phase is Phase.ROLLED_BACK and d.status.halt and d.status.halt.during is During.WATCH


def test_the_watch_passes_once_and_then_evaluates_nothing() -> None:
    c, d = step(baking_ready(), observations=passing())
    c, d = step(c, now=at(61))
    assert [e.reason.value for e in d.events] == ["WatchPassed"]
    assert d.status.history[-1].watch_passed_at == at(61)
    assert next(x for x in d.status.conditions if x.type == "Watching").status == "False"
    assert not evaluation_due(replace(c, now=at(75)))
    _, d = step(c, now=at(80))
    assert not d.events and d.requeue_after == 30.0


def test_no_watch_with_0s() -> None:
    _, d = step(baking_ready({"watch": "0s"}), observations=passing())
    assert d.status.rollout and d.status.rollout.watch_until is None
    assert next(x for x in d.status.conditions if x.type == "Watching").status == "False"


def test_watch_failure_with_no_release_before_scales_to_zero() -> None:
    status = {"phase": "Baking", "revision": R_NEW, "currentRevision": R_NEW, "history": [entry(R_NEW)]}
    status["rollout"] = {
        "revision": R_NEW,
        "startedAt": at(-40).isoformat(),
        "bakeSince": at(-30).isoformat(),
    }
    c = ctx(
        tier(status=status, order=0, name="bulk", gate={"watch": "60s", "failureLimit": 1}),
        deployment=ready(R_NEW),
    )
    c, d = step(c, observations=passing())
    _, d = step(c, now=at(10), observations=failing())
    assert d.status.phase is Phase.ROLLED_BACK and d.deployment.source is Source.NONE


# --- the fleet policy ---------------------------------------------------------------------


def halted_peer(name: str = "bulk", order: int = 0, release: str = R_NEW, by: str | None = None) -> Peer:
    return Peer(
        name,
        order,
        R_NEW,
        R_OLD,
        Phase.ROLLED_BACK,
        release=release,
        history=hist(entry(R_NEW, signedOffAt=-20, haltedAt=-1)),
        halt_release=None if by else release,
    )


def running_new(phase: str = "SignedOff", **extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": phase,
        "revision": R_NEW,
        "currentRevision": R_NEW,
        "signedOffRevision": R_NEW if phase == "SignedOff" else R_OLD,
        "rollout": {"revision": R_NEW, "startedAt": at(-30).isoformat()},
        "history": [
            entry(R_OLD, signedOffAt=-90),
            entry(R_NEW, **({"signedOffAt": -10} if phase == "SignedOff" else {})),
        ],
    }
    status["history"][-1]["startedAt"] = at(-30).isoformat()
    return status | extra


@pytest.mark.parametrize(
    ("phase", "during"),
    [("SignedOff", During.SIGNED_OFF), ("Baking", During.BAKE), ("Progressing", During.PROGRESS)],
)
def test_fleet_rollback_of_a_tier_running_or_rolling_the_release(phase: str, during: During) -> None:
    c = ctx(
        tier(status=running_new(phase), order=2, name="priority"),
        deployment=ready(R_NEW),
        peers=(halted_peer(),),
    )
    _, d = step(c)
    assert d.status.phase is Phase.ROLLED_BACK
    assert d.deployment.source is Source.SIGNED_OFF and d.deployment.revision == R_OLD
    halt = d.status.halt
    assert halt is not None
    assert (halt.check, halt.cause, halt.halted_by, halt.release, halt.during) == (
        "fleet",
        f"tier bulk halted release {R_NEW}",
        "bulk",
        R_NEW,
        during,
    )
    assert halt.window_start == at(-30) and halt.window_end == T0
    assert d.status.history[-1].rolled_back_at == T0 and d.status.history[-1].halted_at is None
    assert [e.reason.value for e in d.events] == ["FleetRolledBack"] and d.events[0].warning


def test_fleet_rollback_reaches_lower_tiers_too_and_a_watching_one_says_watch() -> None:
    status = running_new()
    status["rollout"]["watchUntil"] = at(100).isoformat()
    c = ctx(
        tier(status=status, order=0, name="bulk"),
        deployment=ready(R_NEW),
        peers=(halted_peer("priority", 2),),
    )
    _, d = step(c)
    assert d.status.phase is Phase.ROLLED_BACK and d.status.halt and d.status.halt.during is During.WATCH


def standard_on_new(**kw: Any) -> Peer:
    """A tier of order 1 that runs the halted release (signed off on it), with the default policy."""
    return Peer(
        "standard",
        1,
        R_NEW,
        R_NEW,
        Phase.SIGNED_OFF,
        release=R_NEW,
        history=hist(entry(R_OLD, signedOffAt=-90), entry(R_NEW, signedOffAt=-10)),
        current_revision=R_NEW,
        **kw,
    )


@pytest.mark.parametrize(
    ("above", "now", "waits"),
    [
        (standard_on_new(), T0, True),
        (replace(standard_on_new(), phase=Phase.ROLLED_BACK), T0, False),
        (standard_on_new(on_fleet_halt=OnFleetHalt.HOLD), T0, False),
        (
            replace(standard_on_new(), current_revision=R_OLD, history=hist(entry(R_OLD, signedOffAt=-90))),
            T0,
            False,
        ),
        (standard_on_new(), at(FLEET_ORDER_WAIT), False),
    ],
    ids=[
        "higher-tier-still-on-R",
        "higher-tier-rolled-back",
        "higher-tier-holds",
        "higher-tier-not-on-R",
        "waited-long-enough",
    ],
)
def test_a_fleet_rollback_waits_for_the_higher_tiers_on_the_release_to_record_theirs(
    above: Peer, now: datetime, waits: bool
) -> None:
    c = ctx(
        tier(status=running_new(), order=0, name="bulk"),
        now=now,
        deployment=ready(R_NEW),
        peers=(halted_peer("priority", 2), above),
    )
    _, d = step(c)
    if waits:
        assert d.status.phase is Phase.SIGNED_OFF and d.status.halt is None and not d.events
        assert d.deployment.source is Source.SIGNED_OFF and d.deployment.revision == R_NEW
        assert d.requeue_after == FLEET_ORDER_POLL
    else:
        assert d.status.phase is Phase.ROLLED_BACK and d.deployment.revision == R_OLD


@pytest.mark.parametrize(
    "peer",
    [
        halted_peer(release="other"),
        halted_peer(by="priority"),
        replace(halted_peer(), phase=Phase.WAITING),
    ],
    ids=["other-release", "propagated-halt", "no-longer-halted"],
)
def test_the_fleet_policy_leaves_tiers_not_on_the_halted_release(peer: Peer) -> None:
    c = ctx(tier(status=running_new(), order=2, name="priority"), deployment=ready(R_NEW), peers=(peer,))
    _, d = step(c)
    assert d.status.phase is not Phase.ROLLED_BACK


def test_a_rolled_back_tier_stays_rolled_back_and_replays_once_healthy() -> None:
    c = ctx(
        tier(status=running_new(), order=2, name="priority", replay={"auto": True}),
        deployment=ready(R_NEW),
        peers=(halted_peer(),),
    )
    c, d = step(c)
    c, d = step(c, now=at(1), deployment=ready(R_OLD))
    assert d.status.phase is Phase.ROLLED_BACK
    assert d.replay is not None and (d.replay.tier, d.replay.revision) == ("priority", R_NEW)
    assert d.replay.window_start == at(-30)


def test_hold_keeps_the_release_and_says_so_once() -> None:
    c = ctx(
        tier(status=running_new(), order=0, name="bulk", onFleetHalt="Hold"),
        deployment=ready(R_NEW),
        peers=(halted_peer("priority", 2),),
    )
    c, d = step(c)
    assert d.status.phase is Phase.SIGNED_OFF and d.deployment.revision == R_NEW
    assert "onFleetHalt: Hold" in (d.status.message or "")
    assert [e.reason.value for e in d.events] == ["FleetHeld"]
    _, d = step(c, now=at(1))
    assert not d.events


def test_hold_stops_the_fleet_above_the_halted_tier() -> None:
    c = ctx(
        tier(status=signed(), order=2, name="priority", onFleetHalt="Hold"),
        peers=(halted_peer("standard", 1),),
    )
    _, d = step(c)
    assert d.status.phase is Phase.WAITING and "is halted" in (d.status.message or "")


def test_the_halted_tier_itself_records_no_cause() -> None:
    c = ctx(
        tier(status=running_new("Baking"), order=0, name="bulk", gate={"failureLimit": 1}),
        deployment=ready(R_NEW),
    )
    _, d = step(c, observations=failing())
    assert d.status.halt and d.status.halt.cause is None and d.status.halt.halted_by is None
    assert d.status.halt.during is During.BAKE
