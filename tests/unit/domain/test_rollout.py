"""The tier state machine, table-driven: every phase transition, with a fake clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from tests.unit.domain.rollout_cases import NEW, R_NEW, R_OLD, T0, ctx, ready, step

from tiergate.api.v1alpha1 import Phase, SenderTier, SenderTierStatus
from tiergate.domain.checks import Observation, Result
from tiergate.domain.rollout import (
    Context,
    Decision,
    DeploymentIntent,
    Peer,
    Requests,
    Source,
    blocker,
    decide,
    evaluation_due,
    rollback_target,
)

GATE = {"progressDeadline": "60s", "bake": "30s", "interval": "10s", "failureLimit": 2, "readinessOnly": True}


def tier(
    template: dict[str, Any] = NEW,
    status: dict[str, Any] | None = None,
    on_failure: str = "Rollback",
    order: int = 1,
    gate: dict[str, Any] | None = None,
) -> SenderTier:
    return SenderTier.model_validate(
        {
            "metadata": {"name": "standard", "namespace": "ns", "generation": 2, "uid": "u"},
            "spec": {
                "fleet": "f",
                "order": order,
                "trafficClass": "standard",
                "replicas": 2,
                "template": template,
                "onFailure": on_failure,
                # No settle time unless a test asks for it: settle has tests of its own below.
                "healthGate": {"settle": "0s", "readinessOnly": True, **(gate or GATE)},
            },
            "status": status or {},
        }
    )


def test_mid_rollout_counts_are_not_a_finished_rollout() -> None:
    # Surge pod Ready, one new pod still starting, one old pod left: ready/available are 2 across
    # both ReplicaSets, which must not count as the new revision being Ready.
    mid = replace(ready(R_NEW), total=3, updated=2)
    assert not mid.rolled_out(R_NEW, 2)
    assert ready(R_NEW).rolled_out(R_NEW, 2)
    assert not replace(ready(R_NEW), observed_generation=0).rolled_out(R_NEW, 2)
    assert not ready(R_OLD).rolled_out(R_NEW, 2)


def passing() -> tuple[Observation, ...]:
    return (Observation("pods-ready", Result.PASS, 2.0), Observation("error-rate", Result.PASS, 0.0))


def failing() -> tuple[Observation, ...]:
    return (
        Observation("pods-ready", Result.PASS, 2.0),
        Observation("error-rate", Result.FAIL, 0.4, "<= 0.05", "sum(rate(x))", "0.4 > 0.05"),
    )


def inconclusive() -> tuple[Observation, ...]:
    return (
        Observation("pods-ready", Result.PASS, 2.0),
        Observation("error-rate", Result.INCONCLUSIVE, error="no data"),
    )


def signed(rev: str = R_OLD) -> dict[str, Any]:
    return {"phase": "SignedOff", "revision": rev, "signedOffRevision": rev, "currentRevision": rev}


LOWER_SETTLED = Peer("bulk", 0, R_NEW, R_NEW, Phase.SIGNED_OFF)
LOWER_MOVING = Peer("bulk", 0, R_NEW, R_OLD, Phase.BAKING)
LOWER_HALTED = Peer("bulk", 0, R_NEW, R_OLD, Phase.ROLLED_BACK)
LOWER_PAUSED = Peer("bulk", 0, R_NEW, R_NEW, Phase.SIGNED_OFF, paused=True)
SAME_ORDER_MOVING = Peer("standard-b", 1, R_NEW, R_OLD, Phase.PROGRESSING)
HIGHER_MOVING = Peer("priority", 2, R_NEW, R_OLD, Phase.WAITING)


@pytest.mark.parametrize(
    ("peers", "paused", "blocked_by"),
    [
        ((), False, None),
        ((LOWER_SETTLED,), False, None),
        ((LOWER_MOVING,), False, "bulk"),
        ((LOWER_HALTED,), False, "bulk"),
        ((LOWER_PAUSED,), False, "bulk"),
        ((SAME_ORDER_MOVING,), False, None),
        ((HIGHER_MOVING,), False, None),
        ((LOWER_SETTLED,), True, None),
    ],
    ids=[
        "alone",
        "lower-settled",
        "lower-moving",
        "lower-halted",
        "lower-paused",
        "same-order",
        "higher",
        "self-paused",
    ],
)
def test_blocker(peers: tuple[Peer, ...], paused: bool, blocked_by: str | None) -> None:
    b = blocker("standard", 1, peers, paused, R_NEW)
    if blocked_by is None and not paused:
        assert b is None
    elif paused:
        assert b is not None and "paused" in b.why
    else:
        assert b is not None and b.tier == blocked_by


@pytest.mark.parametrize(
    ("status", "peers", "phase", "source"),
    [
        ({}, (), Phase.PROGRESSING, Source.SPEC),
        ({}, (LOWER_MOVING,), Phase.WAITING, Source.NONE),
        (signed(), (LOWER_MOVING,), Phase.WAITING, Source.SIGNED_OFF),
        (signed(), (LOWER_HALTED,), Phase.WAITING, Source.SIGNED_OFF),
        (signed(), (LOWER_SETTLED,), Phase.PROGRESSING, Source.SPEC),
        (signed(R_NEW), (LOWER_MOVING,), Phase.SIGNED_OFF, Source.SPEC),
    ],
    ids=["new-alone", "new-waits", "update-waits", "waits-on-halt", "update-starts", "at-signed-off"],
)
def test_idle_transitions(
    status: dict[str, Any], peers: tuple[Peer, ...], phase: Phase, source: Source
) -> None:
    d = decide(ctx(tier(status=status), peers=peers))
    assert d.status.phase is phase
    assert d.deployment.source is source
    if phase is Phase.WAITING:
        assert d.status.waiting_for == "bulk"
        assert d.events and d.events[0].reason.value in ("TierWaiting", "ReleaseNotSignedOffBelow")
    if phase is Phase.PROGRESSING:
        assert d.status.rollout is not None and d.status.rollout.started_at == T0
        assert d.deployment.revision == R_NEW


def test_good_revision_is_signed_off_after_the_whole_bake() -> None:
    c = ctx(tier(status=signed()))
    c, d = step(c)
    assert d.status.phase is Phase.PROGRESSING
    c, d = step(c, now=T0 + timedelta(seconds=5), deployment=ready(R_OLD))
    assert d.status.phase is Phase.PROGRESSING, "old pods Ready is not the new revision Ready"
    c, d = step(c, now=T0 + timedelta(seconds=8), deployment=ready(R_NEW))
    assert d.status.phase is Phase.BAKING
    assert evaluation_due(replace(c, now=T0 + timedelta(seconds=8)))
    t = T0 + timedelta(seconds=8)
    for i in range(3):
        now = t + timedelta(seconds=10 * i)
        c, d = step(c, now=now, deployment=ready(R_NEW), observations=passing())
        assert d.status.phase is Phase.BAKING, f"signed off too early at evaluation {i}"
        assert not evaluation_due(replace(c, now=now + timedelta(seconds=9)))
    c, d = step(c, now=t + timedelta(seconds=30), deployment=ready(R_NEW), observations=passing())
    assert d.status.phase is Phase.SIGNED_OFF
    assert d.save_signed_off
    assert d.status.signed_off_revision == R_NEW
    assert [e.reason.value for e in d.events] == ["TierSignedOff"]
    ready_cond = next(x for x in d.status.conditions if x.type == "Ready")
    assert ready_cond.status == "True" and ready_cond.observed_generation == 2


def test_a_failure_restarts_the_bake_and_the_limit_halts_with_rollback() -> None:
    c = ctx(
        tier(
            status={
                **signed(),
                "phase": "Baking",
                "rollout": {"revision": R_NEW, "startedAt": T0.isoformat(), "readyAt": T0.isoformat()},
            }
        )
    )
    c, d = step(c, deployment=ready(R_NEW), observations=passing())
    assert d.status.rollout and d.status.rollout.bake_since == T0
    c, d = step(c, now=T0 + timedelta(seconds=10), deployment=ready(R_NEW), observations=failing())
    assert d.status.phase is Phase.BAKING
    assert d.status.rollout and d.status.rollout.bake_since is None
    assert [e.reason.value for e in d.events] == ["CheckFailed"]
    c, d = step(c, now=T0 + timedelta(seconds=20), deployment=ready(R_NEW), observations=failing())
    assert d.status.phase is Phase.ROLLED_BACK
    assert d.deployment.source is Source.SIGNED_OFF and d.deployment.revision == R_OLD
    halt = d.status.halt
    assert halt is not None
    assert (halt.check, halt.value, halt.threshold, halt.query) == (
        "error-rate",
        0.4,
        "<= 0.05",
        "sum(rate(x))",
    )
    assert (
        halt.revision == R_NEW and halt.window_start == T0 and halt.window_end == T0 + timedelta(seconds=20)
    )
    assert "error-rate" in (d.status.message or "") and "0.05" in (d.status.message or "")
    assert {e.reason.value for e in d.events} >= {"TierHalted", "TierRolledBack"}
    stalled = next(x for x in d.status.conditions if x.type == "Stalled")
    assert stalled.status == "True"


def test_pause_on_failure_keeps_the_bad_revision_for_a_person() -> None:
    c = ctx(
        tier(
            status={
                **signed(),
                "phase": "Progressing",
                "rollout": {"revision": R_NEW, "startedAt": T0.isoformat()},
            },
            on_failure="Pause",
        )
    )
    _, d = step(c, now=T0 + timedelta(seconds=61), deployment=replace(ready(R_NEW), ready=1, available=1))
    assert d.status.phase is Phase.HALTED
    assert d.deployment.source is Source.SPEC and d.deployment.revision == R_NEW
    assert d.status.halt and d.status.halt.check == "progressDeadline" and d.status.halt.window_end is None


@pytest.mark.parametrize(("signed_off", "source"), [(R_OLD, Source.SIGNED_OFF), (None, Source.NONE)])
def test_progress_deadline_rolls_back(signed_off: str | None, source: Source) -> None:
    status = {"phase": "Progressing", "rollout": {"revision": R_NEW, "startedAt": T0.isoformat()}}
    if signed_off:
        status["signedOffRevision"] = signed_off
    c = ctx(tier(status=status))
    _, d = step(c, now=T0 + timedelta(seconds=59), deployment=replace(ready(R_NEW), ready=0))
    assert d.status.phase is Phase.PROGRESSING
    assert d.requeue_after <= 1.1
    _, d = step(c, now=T0 + timedelta(seconds=61), deployment=replace(ready(R_NEW), ready=0))
    assert d.status.phase is Phase.ROLLED_BACK
    assert d.deployment.source is source
    assert d.status.halt and d.status.halt.check == "progressDeadline" and d.status.halt.value == 0


def test_inconclusive_never_signs_off_and_halts_past_its_limit() -> None:
    gate = {"progressDeadline": "60s", "bake": "10s", "interval": "10s", "inconclusiveLimit": "30s"}
    c = ctx(
        tier(
            status={
                **signed(),
                "phase": "Baking",
                "rollout": {"revision": R_NEW, "startedAt": T0.isoformat()},
            },
            gate=gate,
        )
    )
    for i in range(4):
        c, d = step(
            c, now=T0 + timedelta(seconds=10 * i), deployment=ready(R_NEW), observations=inconclusive()
        )
        assert d.status.phase is Phase.BAKING
    c, d = step(c, now=T0 + timedelta(seconds=40), deployment=ready(R_NEW), observations=inconclusive())
    assert d.status.phase is Phase.ROLLED_BACK
    assert d.status.halt and "inconclusive" in d.status.halt.message


def test_promote_signs_off_once_and_records_who() -> None:
    baking = {**signed(), "phase": "Baking", "rollout": {"revision": R_NEW, "startedAt": T0.isoformat()}}
    c = ctx(tier(status=baking), deployment=ready(R_NEW), requests=Requests(promote="alice@t1"))
    c, d = step(c)
    assert d.status.phase is Phase.SIGNED_OFF and d.save_signed_off
    assert d.status.rollout and d.status.rollout.promoted_by == "alice@t1"
    assert d.status.handled_requests["promote"] == "alice@t1"


def test_abort_rolls_back_now() -> None:
    baking = {**signed(), "phase": "Baking", "rollout": {"revision": R_NEW, "startedAt": T0.isoformat()}}
    c = ctx(tier(status=baking), deployment=ready(R_NEW), requests=Requests(abort="bob@t2"))
    _, d = step(c)
    assert d.status.phase is Phase.ROLLED_BACK and d.status.halt and d.status.halt.check == "abort"
    assert d.status.handled_requests["abort"] == "bob@t2"


def test_halted_stays_until_retry_or_new_revision() -> None:
    halted = {
        **signed(),
        "phase": "RolledBack",
        "halt": {
            "check": "error-rate",
            "revision": R_NEW,
            "windowStart": T0.isoformat(),
            "at": T0.isoformat(),
        },
    }
    c = ctx(tier(status=halted))
    _, d = step(c, now=T0 + timedelta(hours=1))
    assert d.status.phase is Phase.ROLLED_BACK and d.deployment.source is Source.SIGNED_OFF
    _, d = step(c, requests=Requests(retry="carol@t3"))
    assert d.status.phase is Phase.PROGRESSING and d.status.halt is None
    assert d.status.handled_requests["retry"] == "carol@t3"
    handled = c.with_status(c.tier.status.model_copy(update={"handled_requests": {"retry": "carol@t3"}}))
    _, d = step(handled, requests=Requests(retry="carol@t3"))
    assert d.status.phase is Phase.ROLLED_BACK, "the same retry request is acted on once"
    fixed = ctx(
        tier(template={"spec": {"containers": [{"name": "w", "image": "tiergate:3"}]}}, status=halted)
    )
    _, d = step(fixed)
    assert d.status.phase is Phase.PROGRESSING and d.status.halt is None


def test_spec_change_mid_rollout_supersedes_the_old_revision() -> None:
    progressing = {
        **signed(),
        "phase": "Progressing",
        "rollout": {"revision": "aaaaaaaaaa", "startedAt": T0.isoformat()},
    }
    _, d = step(ctx(tier(status=progressing)), now=T0 + timedelta(seconds=1))
    assert d.status.phase is Phase.PROGRESSING
    assert d.status.rollout and d.status.rollout.revision == R_NEW
    assert d.status.rollout.started_at == T0 + timedelta(seconds=1)
    _, d = step(ctx(tier(status=progressing)), peers=(LOWER_MOVING,))
    assert d.status.phase is Phase.WAITING and d.deployment.source is Source.SIGNED_OFF


def test_paused_tier_keeps_baking_but_does_not_sign_off() -> None:
    baking = {
        **signed(),
        "phase": "Baking",
        "rollout": {"revision": R_NEW, "startedAt": T0.isoformat(), "bakeSince": T0.isoformat()},
    }
    c = ctx(tier(status=baking), deployment=ready(R_NEW), requests=Requests(paused=True))
    _, d = step(c, now=T0 + timedelta(minutes=5), observations=passing())
    assert d.status.phase is Phase.BAKING and "paused" in (d.status.message or "")
    _, d = step(c, now=T0 + timedelta(minutes=5), observations=failing(), requests=Requests(paused=True))
    assert d.status.rollout and d.status.rollout.consecutive_failures == 1, "safety is never paused"


def test_ready_condition_transition_time_moves_only_on_change() -> None:
    c = ctx(tier(status=signed(R_NEW)), deployment=ready(R_NEW))
    c, d1 = step(c)
    c, d2 = step(c, now=T0 + timedelta(minutes=1))
    r1 = next(x for x in d1.status.conditions if x.type == "Ready")
    r2 = next(x for x in d2.status.conditions if x.type == "Ready")
    assert r1.status == r2.status == "True"
    assert r2.last_transition_time == r1.last_transition_time == T0
    assert isinstance(d2.status, SenderTierStatus)


def _rolled_back(job: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        **signed(),
        "phase": "RolledBack",
        "halt": {
            "check": "error-rate",
            "revision": R_NEW,
            "windowStart": T0.isoformat(),
            "windowEnd": (T0 + timedelta(seconds=40)).isoformat(),
            "at": (T0 + timedelta(seconds=40)).isoformat(),
        },
    }
    if job is not None:
        status["replayJob"] = job
    return status


def _auto(status: dict[str, Any], auto: bool = True) -> SenderTier:
    t = tier(status=status)
    return t.model_copy(
        update={"spec": t.spec.model_copy(update={"replay": t.spec.replay.model_copy(update={"auto": auto})})}
    )


def test_auto_replay_starts_once_the_tier_is_healthy_again() -> None:
    now = T0 + timedelta(minutes=2)
    d = decide(ctx(_auto(_rolled_back()), now=now, deployment=ready(R_OLD)))
    assert d.replay is not None
    assert (d.replay.tier, d.replay.revision, d.replay.window_start, d.replay.until) == (
        "standard",
        R_NEW,
        T0,
        now,
    )
    not_yet = decide(ctx(_auto(_rolled_back()), now=now, deployment=replace(ready(R_OLD), ready=1)))
    assert not_yet.replay is None, "replay waits until the rolled-back tier is healthy"
    off = decide(ctx(_auto(_rolled_back(), auto=False), now=now, deployment=ready(R_OLD)))
    assert off.replay is None


@pytest.mark.parametrize(
    ("job", "refresh", "starts"),
    [
        ({"id": "j1", "state": "running", "revision": R_NEW, "createdAt": T0.isoformat()}, "j1", False),
        ({"id": "j1", "state": "done", "revision": R_NEW, "createdAt": T0.isoformat()}, None, False),
        ({"id": "j0", "state": "done", "revision": R_OLD, "createdAt": T0.isoformat()}, None, True),
    ],
    ids=["follows-running-job", "done-job-left-alone", "older-halt-job-replaced"],
)
def test_auto_replay_job_is_started_once_per_halt(
    job: dict[str, Any], refresh: str | None, starts: bool
) -> None:
    d = decide(ctx(_auto(_rolled_back(job)), deployment=ready(R_OLD)))
    assert d.refresh_replay == refresh
    assert (d.replay is not None) == starts


def test_progress_counts_only_new_pods() -> None:
    mid = replace(ready(R_NEW), total=3, updated=2, ready=2)
    assert mid.new_ready(R_NEW) == 1
    assert mid.progress_text(R_NEW, 2) == "1/2 new pods Ready, 1 old pods still running"
    never = replace(ready(R_NEW), total=3, updated=1, ready=2)
    assert never.new_ready(R_NEW) == 0, "old pods staying Ready are not the new revision's"
    assert ready(R_OLD).progress_text(R_NEW, 2) == "0/2 pods of the new revision created"


# A release applied to the whole fleet at once reaches the tiers in any order; the watch lags.


def _update(settle: str = "10s") -> Context:
    """A tier signed off at the old revision whose spec now asks for the new one."""
    return ctx(tier(status=signed(), gate={**GATE, "settle": settle}))


def test_a_new_revision_above_order_0_settles_before_it_starts() -> None:
    c, first = step(_update(), peers=(LOWER_SETTLED,))
    assert first.status.phase is Phase.WAITING and first.deployment.source is Source.SIGNED_OFF
    assert first.status.revision_seen_at == T0 and first.status.waiting_for is None
    assert "settles for 10s" in (first.status.message or "")
    assert [e.reason.value for e in first.events] == ["RevisionSettling"]
    assert 9.9 < first.requeue_after <= 10.1
    c, later = step(c, now=T0 + timedelta(seconds=6), peers=(LOWER_SETTLED,))
    assert later.status.phase is Phase.WAITING and later.status.revision_seen_at == T0
    assert later.events == (), "one Event for the whole settle time"
    assert 3.9 < later.requeue_after <= 4.1
    _, done = step(c, now=T0 + timedelta(seconds=10), peers=(LOWER_SETTLED,))
    assert done.status.phase is Phase.PROGRESSING and done.deployment.revision == R_NEW


def test_a_lower_tier_seen_during_the_settle_time_holds_the_revision() -> None:
    # The higher tier's change came first; the lower tier's share of the release a moment later.
    c, _ = step(_update(), peers=(LOWER_SETTLED,))
    _, d = step(c, now=T0 + timedelta(seconds=10), peers=(LOWER_MOVING,))
    assert d.status.phase is Phase.WAITING and d.status.waiting_for == "bulk"
    assert d.deployment.source is Source.SIGNED_OFF and d.deployment.revision == R_OLD


@pytest.mark.parametrize(
    ("order", "retry", "phase"),
    [(0, False, Phase.PROGRESSING), (1, True, Phase.PROGRESSING), (1, False, Phase.WAITING)],
    ids=["order-0-waits-for-no-tier", "retry-is-explicit", "order-1-settles"],
)
def test_settle_applies_to_new_revisions_above_order_0(order: int, retry: bool, phase: Phase) -> None:
    status: dict[str, Any] = {**signed(), "revision": R_OLD}
    requests = Requests()
    if retry:
        status = {
            **signed(),
            "phase": "RolledBack",
            "revision": R_NEW,
            "halt": {"check": "x", "revision": R_NEW, "windowStart": T0.isoformat(), "at": T0.isoformat()},
        }
        requests = Requests(retry="carol@t3")
    t = tier(status=status, order=order, gate={**GATE, "settle": "10s"})
    d = decide(ctx(t, requests=requests))
    assert d.status.phase is phase


def test_a_new_spec_restarts_the_settle_time() -> None:
    seen_old = {**signed(), "revision": R_OLD, "revisionSeenAt": T0.isoformat()}
    d = decide(ctx(tier(status=seen_old, gate={**GATE, "settle": "10s"}), now=T0 + timedelta(minutes=5)))
    assert d.status.revision == R_NEW and d.status.revision_seen_at == T0 + timedelta(minutes=5)
    assert d.status.phase is Phase.WAITING


@pytest.mark.parametrize(
    ("phase", "peer", "why"),
    [
        ("Progressing", LOWER_HALTED, "is halted"),
        ("Baking", LOWER_HALTED, "is halted"),
        ("Progressing", LOWER_MOVING, f"has not signed off release {R_NEW} yet"),
        ("Baking", LOWER_MOVING, f"has not signed off release {R_NEW} yet"),
    ],
)
def test_a_rolling_tier_stops_when_a_lower_tier_halts_or_moves(phase: str, peer: Peer, why: str) -> None:
    rolling = {**signed(), "phase": phase, "revision": R_NEW, "currentRevision": R_NEW}
    rolling["rollout"] = {"revision": R_NEW, "startedAt": T0.isoformat()}
    c = ctx(tier(status=rolling), deployment=ready(R_NEW), peers=(peer,))
    _, d = step(c, now=T0 + timedelta(seconds=5), observations=passing() if phase == "Baking" else None)
    assert d.status.phase is Phase.WAITING and d.status.waiting_for == "bulk"
    assert d.status.rollout is None and d.status.checks == []
    assert d.deployment.source is Source.SIGNED_OFF and d.deployment.revision == R_OLD
    assert d.status.current_revision == R_OLD
    assert [e.reason.value for e in d.events] == ["YieldedToLowerTier"]
    assert d.events[0].warning and why in d.events[0].message and R_OLD in d.events[0].message
    assert why in (d.status.message or "")


@pytest.mark.parametrize("peer", [LOWER_SETTLED, LOWER_PAUSED, SAME_ORDER_MOVING, HIGHER_MOVING])
def test_a_rolling_tier_goes_on_past_peers_that_do_not_stop_it(peer: Peer) -> None:
    rolling = {**signed(), "phase": "Progressing", "revision": R_NEW}
    rolling["rollout"] = {"revision": R_NEW, "startedAt": T0.isoformat()}
    c = ctx(tier(status=rolling), deployment=ready(R_NEW), peers=(peer,))
    _, d = step(c, now=T0 + timedelta(seconds=5))
    assert d.status.phase is Phase.BAKING and d.deployment.revision == R_NEW


def test_a_missing_rollback_target_is_a_condition_set_once_and_dropped_when_found() -> None:
    held = DeploymentIntent(Source.SIGNED_OFF, R_OLD, 2)
    first = rollback_target(Decision(SenderTierStatus(), held), "no ControllerRevision", 2, T0)
    [missing] = [c for c in first.status.conditions if c.type == "RollbackTargetMissing"]
    assert (missing.status, missing.reason, missing.message) == (
        "True",
        "RollbackTargetMissing",
        "no ControllerRevision",
    )
    assert [(e.reason.value, e.warning) for e in first.events] == [("RollbackTargetMissing", True)]

    later = T0 + timedelta(seconds=30)
    again = rollback_target(Decision(first.status, held), "no ControllerRevision", 2, later)
    assert again.status == first.status and again.events == ()

    found = rollback_target(Decision(again.status, held), None, 2, later)
    assert not [c for c in found.status.conditions if c.type == "RollbackTargetMissing"]
    assert found.events == ()
    untouched = Decision(SenderTierStatus(), held)
    assert rollback_target(untouched, None, 2, T0) is untouched
