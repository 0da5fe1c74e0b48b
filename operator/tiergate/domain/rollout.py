"""The tier state machine: from what the operator sees to what the tier's status and Deployment become.

One pure function, :func:`decide`, takes a frozen :class:`Context` (the SenderTier, its fleet's
other tiers, its Deployment, the on-call requests, the clock and, when due, the health stack's
observations) and returns a frozen :class:`Decision`. The status it returns is the record of intent:
the controller writes it *before* it touches the Deployment, so an operator killed between the two
converges the Deployment from status when it comes back, and never re-applies a rolled-back
revision.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import assert_never

from tiergate.api.durations import parse_duration
from tiergate.api.v1alpha1 import (
    HALTED_PHASES,
    LIVE_PHASES,
    ApprovalStatus,
    CanaryPhase,
    CheckStatus,
    During,
    HaltStatus,
    HistoryEntry,
    OnFailure,
    OnFleetHalt,
    Phase,
    RolloutStatus,
    SenderTier,
    SenderTierStatus,
    UntestedRelease,
)
from tiergate.domain import canary as can
from tiergate.domain import changecontrol as cc
from tiergate.domain import conditions as cond
from tiergate.domain import release as rel
from tiergate.domain.checks import Observation, Result, judge_pods, verdict
from tiergate.domain.evaluation import CheckEnv
from tiergate.domain.reasons import Reason

TICK_SECONDS = 5.0
# Settled phases wait for a change (watch events wake them at once) and only re-check slowly.
IDLE_SECONDS = 30.0
# A fleet rollback waits at most this long after the halt for higher tiers to record theirs,
# looking again every FLEET_ORDER_POLL seconds.
FLEET_ORDER_WAIT = 5.0
FLEET_ORDER_POLL = 0.2


class Source(enum.StrEnum):
    """Which template the tier's Deployment should run."""

    SPEC = "spec"
    SIGNED_OFF = "signed-off"
    NONE = "none"


@dataclass(frozen=True)
class DeploymentView:
    """What the tier's Deployment looks like now."""

    exists: bool = False
    revision: str | None = None
    replicas: int = 0
    total: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0
    generation: int = 0
    observed_generation: int = 0
    applied: str | None = None

    def new_ready(self, revision: str) -> int:
        """Ready pods of ``revision``, estimated: Ready pods beyond the old ones still running.

        Old pods stay Ready while they run (``maxUnavailable: 0``), so the surplus is the new ones.
        """
        if self.revision != revision:
            return 0
        old = max(self.total - self.updated, 0)
        return max(min(self.ready - old, self.updated), 0)

    def progress_text(self, revision: str, replicas: int) -> str:
        """How far a revision's pods are, for status and halt messages."""
        if self.revision != revision:
            return f"0/{replicas} pods of the new revision created"
        old = max(self.total - self.updated, 0)
        text = f"{self.new_ready(revision)}/{replicas} new pods Ready"
        return text + (f", {old} old pods still running" if old else "")

    def rolled_out(self, revision: str, replicas: int) -> bool:
        """True when every pod runs ``revision`` and is Ready and available, and no old pod is left.

        Ready and available counts span old and new ReplicaSets mid-rollout, so they prove nothing
        until the only pods left are updated ones (what ``kubectl rollout status`` waits for).
        """
        return (
            self.exists
            and self.revision == revision
            and self.observed_generation >= self.generation
            and self.replicas == replicas
            and self.updated >= replicas
            and self.total == self.updated
            and self.ready >= replicas
            and self.available >= replicas
        )


@dataclass(frozen=True)
class Peer:
    """Another tier of the same fleet, as the fleet index sees it."""

    name: str
    order: int
    spec_revision: str
    signed_off_revision: str | None
    phase: Phase | None
    paused: bool = False
    release: str = ""
    history: tuple[HistoryEntry, ...] = ()
    halt_release: str | None = None
    current_revision: str | None = None
    on_fleet_halt: OnFleetHalt = OnFleetHalt.ROLLBACK

    @property
    def halted(self) -> bool:
        """True while this tier is halted or rolled back."""
        return self.phase in HALTED_PHASES

    @property
    def settled(self) -> bool:
        """True when this tier is signed off at its current spec."""
        return self.signed_off_revision == self.spec_revision and not self.halted

    def vouches(self, release: str) -> bool:
        """True when this tier has signed ``release`` off and has not halted on it since.

        A tier with no history yet (written by an operator before history existed) vouches for the
        release it is signed off at now.
        """
        if self.history:
            return rel.vouches(self.history, release)
        return self.settled and (self.release or self.spec_revision) == release

    def halted_on(self) -> str | None:
        """The release this tier's own halt (not one the fleet policy made) is on, while halted."""
        return self.halt_release if self.halted else None

    def runs(self, release: str) -> bool:
        """True when this tier's Deployment runs ``release`` or is rolling it out (as its status says)."""
        if self.halted:
            return False
        if self.phase in LIVE_PHASES and self.release == release:
            return True
        running = rel.release_of_revision(self.history, self.current_revision)
        if (
            running is None
            and self.current_revision is not None
            and self.current_revision == self.spec_revision
        ):
            running = self.release
        return running == release

    def halted_at(self, release: str) -> datetime | None:
        """When this tier's newest run of ``release`` halted, or None."""
        for entry in reversed(self.history):
            if entry.release == release:
                return entry.halted_at
        return None


@dataclass(frozen=True)
class Requests:
    """On-call requests read from the SenderTier's annotations."""

    paused: bool = False
    retry: str | None = None
    promote: str | None = None
    abort: str | None = None
    untested_release: str | None = None
    approved_release: str | None = None
    approved_by: str | None = None
    freeze: cc.Freeze | None = None


@dataclass(frozen=True)
class EventNote:
    """An Event to post about this tier."""

    reason: Reason
    message: str
    warning: bool = False


@dataclass(frozen=True)
class DeploymentIntent:
    """The Deployment the tier should have."""

    source: Source
    revision: str | None
    replicas: int


@dataclass(frozen=True)
class Context:
    """Everything :func:`decide` may look at."""

    tier: SenderTier
    spec_revision: str
    now: datetime
    peers: tuple[Peer, ...] = ()
    deployment: DeploymentView = field(default_factory=DeploymentView)
    requests: Requests = field(default_factory=Requests)
    observations: tuple[Observation, ...] | None = None
    canary_deployment: DeploymentView = field(default_factory=DeploymentView)

    @property
    def spec_release(self) -> str:
        """The release key the spec asks for."""
        return rel.release_of(self.tier.spec, self.spec_revision)

    def with_status(self, status: SenderTierStatus) -> Context:
        """The same context with the tier's status replaced."""
        return replace(self, tier=self.tier.with_status(status))


@dataclass(frozen=True)
class Blocker:
    """Why a tier may not start its new revision yet."""

    why: str
    tier: str | None = None
    reason: Reason = Reason.TIER_WAITING


@dataclass(frozen=True)
class ReplayRequest:
    """Replay what a halted revision discarded: this tier, that revision, since it started."""

    tier: str
    revision: str
    window_start: datetime
    until: datetime


REPLAY_DONE = ("done", "cancelled", "failed")


@dataclass(frozen=True)
class Decision:
    """What the controller must do: write status, converge the Deployment, post Events."""

    status: SenderTierStatus
    deployment: DeploymentIntent
    events: tuple[EventNote, ...] = ()
    save_signed_off: bool = False
    requeue_after: float = TICK_SECONDS
    replay: ReplayRequest | None = None
    refresh_replay: str | None = None
    canary: DeploymentIntent | None = None


def blocker(
    name: str,
    order: int,
    peers: Sequence[Peer],
    paused: bool,
    release: str | None = None,
    hint: bool = False,
) -> Blocker | None:
    """Why this tier may not start ``release`` now, or None when it may.

    Every lower-order tier must have signed ``release`` off and not halted on it since; a halted or
    paused lower tier stops the fleet whatever it runs. ``release=None`` skips the identity rule
    (an on-call override let the release through). ``hint`` adds the advice to set ``spec.release``
    when a lower tier is signed off at a different key (the templates may differ on purpose).
    """
    if paused:
        return Blocker("the fleet is paused at this tier")
    return _below(name, order, peers, release, count_paused=True, hint=hint)


def moved_below(name: str, order: int, peers: Sequence[Peer], release: str | None) -> Blocker | None:
    """A lower-order tier that is halted or no longer vouches for ``release``, or None.

    A tier that is rolling out must stop when this is not None: the fleet stops on a halt, and a
    tier never runs a release that no lower tier stands behind. A paused lower tier is frozen where
    it is, so it stops nothing that already moves; a lower tier that moved on to a newer release
    after signing this one off stops nothing either.
    """
    return _below(name, order, peers, release, count_paused=False, hint=False)


def _below(
    name: str, order: int, peers: Sequence[Peer], release: str | None, count_paused: bool, hint: bool
) -> Blocker | None:
    for peer in sorted(peers, key=lambda p: (p.order, p.name)):
        if peer.name == name or peer.order >= order:
            continue
        who = f"tier {peer.name} (order {peer.order})"
        if peer.halted:
            return Blocker(f"{who} is halted", peer.name)
        if peer.paused and count_paused:
            return Blocker(f"{who} is paused", peer.name)
        if release is None or peer.vouches(release):
            continue
        if (peer.release or peer.spec_revision) == release:
            why = f"{who} has not signed off release {release} yet"
        else:
            why = f"{who} has not run release {release}: apply release {release} to tier {peer.name} first"
            if hint:
                why += (
                    " (if the tiers' templates differ on purpose, set the same spec.release on every "
                    "tier of the fleet)"
                )
        return Blocker(why, peer.name, Reason.RELEASE_NOT_SIGNED_OFF)
    return None


def fleet_halt(ctx: Context) -> tuple[Peer, str] | None:
    """Another tier's own halt on a release this tier runs or is rolling out, or None.

    Tiers of higher order come first: when several tiers react to one halt, the one each of them
    names is the same, and the operator wakes the highest order first.
    """
    live = _live_releases(ctx)
    for peer in sorted(ctx.peers, key=lambda p: (p.order, p.name)):
        if peer.name == ctx.tier.metadata.name:
            continue
        bad = peer.halted_on()
        if bad is not None and bad in live:
            return peer, bad
    return None


def _live_releases(ctx: Context) -> set[str]:
    """The releases this tier's Deployment runs or is rolling out now."""
    status = ctx.tier.status
    live: set[str] = set()
    if status.phase in LIVE_PHASES and status.rollout is not None:
        live.add(ctx.spec_release)
    if status.phase in HALTED_PHASES:
        return live
    running = rel.release_of_revision(status.history, status.current_revision)
    if running is not None:
        live.add(running)
    elif status.current_revision is not None and status.current_revision == ctx.spec_revision:
        live.add(ctx.spec_release)
    return live


def _gate_release(ctx: Context) -> str | None:
    """The release the gate checks, or None when an on-call override let this one through."""
    override = ctx.tier.status.untested_release
    if override is not None and override.release == ctx.spec_release:
        return None
    return ctx.spec_release


def settle_left(ctx: Context) -> float:
    """Seconds before this tier's new revision may start; 0 at order 0, which waits for no tier.

    A release applied to the whole fleet at once reaches the tiers in whatever order the client
    sends them, and each tier's view of the others lags the watch by a moment. A tier above order 0
    starts a revision only once it has been seen for ``healthGate.settle``, so the lower tiers'
    share of the same release is seen first and holds it.
    """
    if ctx.tier.spec.order == 0:
        return 0.0
    seen = ctx.tier.status.revision_seen_at or ctx.now
    settle = parse_duration(ctx.tier.spec.health_gate.settle)
    return max(settle - (ctx.now - seen).total_seconds(), 0.0)


def watching(ctx: Context) -> bool:
    """True while the tier is signed off at its spec and its watch after sign-off has time left."""
    status = ctx.tier.status
    rollout = status.rollout
    return (
        status.phase is Phase.SIGNED_OFF
        and status.signed_off_revision == ctx.spec_revision
        and rollout is not None
        and rollout.revision == ctx.spec_revision
        and rollout.watch_until is not None
        and ctx.now < rollout.watch_until
    )


def evaluation_due(ctx: Context) -> bool:
    """True when the stack should be evaluated in this reconcile: in the bake, or in the watch."""
    status = ctx.tier.status
    rollout = status.rollout
    if rollout is None or rollout.revision != ctx.spec_revision:
        return False
    if status.phase is not Phase.BAKING and not watching(ctx):
        return False
    if rollout.last_evaluated_at is None:
        return True
    interval = parse_duration(ctx.tier.spec.health_gate.interval)
    return (ctx.now - rollout.last_evaluated_at).total_seconds() >= interval


def check_env(ctx: Context, namespace: str) -> CheckEnv:
    """What this tier's checks may name; the baseline is every other tier still off its new spec."""
    tier = ctx.tier
    started = tier.status.rollout.started_at if tier.status.rollout else None
    name = tier.metadata.name
    return CheckEnv(
        tier=name,
        revision=ctx.spec_revision,
        fleet=tier.spec.fleet,
        namespace=namespace,
        traffic_class=tier.spec.traffic_class,
        elapsed_seconds=(ctx.now - started).total_seconds() if started else 0.0,
        baseline_tiers=tuple(
            p.name for p in ctx.peers if p.name != name and p.spec_revision != p.signed_off_revision
        ),
    )


def pods_observation(ctx: Context) -> Observation:
    """The implicit first check of every evaluation: this revision's pods are all Ready."""
    ctx = step_context(ctx)
    return judge_pods(ctx.deployment.new_ready(ctx.spec_revision), ctx.tier.spec.replicas)


def decide(ctx: Context) -> Decision:
    """Return the tier's next status, Deployment and Events; the one transition function."""
    ctx = _seen(ctx)
    step = step_context(ctx)
    return _shaped(ctx, step is not ctx, _decide(step))


def _decide(ctx: Context) -> Decision:
    status = ctx.tier.status
    phase = status.phase or Phase.PENDING
    match phase:
        case Phase.HALTED | Phase.ROLLED_BACK:
            return _halted(ctx)
        case Phase.PENDING | Phase.WAITING | Phase.SIGNED_OFF:
            return _idle(ctx)
        case Phase.PROGRESSING:
            return _progressing(ctx)
        case Phase.BAKING:
            return _baking(ctx)
        case _:
            assert_never(phase)


# The phases, one function each.


def _idle(ctx: Context) -> Decision:
    status = ctx.tier.status
    spec = ctx.tier.spec
    rev = ctx.spec_revision
    if (acted := _fleet_acts(ctx)) is not None:
        return acted
    if status.signed_off_revision == rev:
        return _watch(ctx)
    if _new_request(ctx, "untested_release"):
        decision = _idle(_untested(ctx))
        note = EventNote(
            Reason.UNTESTED_RELEASE,
            f"Release {ctx.spec_release} let through untested by the lower tiers, on request of "
            f"{ctx.requests.untested_release}",
            warning=True,
        )
        return replace(decision, events=(note, *decision.events))
    why = blocker(
        ctx.tier.metadata.name,
        spec.order,
        ctx.peers,
        ctx.requests.paused,
        _gate_release(ctx),
        hint=spec.release is None,
    )
    if why is not None:
        return _waiting(ctx, why, reason=why.reason)
    left = settle_left(ctx)
    if left > 0:
        settling = Blocker(
            f"revision {rev} settles for {spec.health_gate.settle}, so that a release applied to the "
            "whole fleet reaches the lower tiers first"
        )
        return _waiting(ctx, settling, reason=Reason.SETTLING, requeue_after=left + 0.05)
    if (refused := _refused(ctx)) is not None:
        wait = (
            IDLE_SECONDS if refused.recheck_after is None else min(IDLE_SECONDS, refused.recheck_after + 0.05)
        )
        return _waiting(ctx, Blocker(refused.why), reason=refused.reason, requeue_after=wait)
    ctx, approved = _approved(ctx)
    decision = _start(ctx, Reason.ROLLOUT_STARTED, f"Rolling out release {ctx.spec_release} (revision {rev})")
    return replace(decision, events=(*approved, *decision.events))


def _refused(ctx: Context) -> cc.Refusal | None:
    """What change control says about starting the spec's release now: approval, window, freeze."""
    return cc.refusal(
        ctx.tier.metadata.name,
        ctx.tier.spec,
        ctx.spec_release,
        ctx.now,
        recorded=ctx.tier.status.approval,
        approved_release=ctx.requests.approved_release,
        freeze=ctx.requests.freeze,
    )


def _approved(ctx: Context) -> tuple[Context, tuple[EventNote, ...]]:
    """Record the approval that lets this release start, when it is new; with its Event."""
    if not cc.needs_approval(ctx.tier.spec, ctx.tier.status.approval, ctx.spec_release):
        return ctx, ()
    who = ctx.requests.approved_by or "unknown"
    approval = ApprovalStatus(release=ctx.spec_release, by=who, at=ctx.now)
    note = EventNote(Reason.APPROVED, f"Release {ctx.spec_release} approved by {who}")
    return ctx.with_status(ctx.tier.status.approved(approval)), (note,)


def _untested(ctx: Context) -> Context:
    """Record an on-call override: this tier may take its spec's release untested below."""
    who = ctx.requests.untested_release or ""
    override = UntestedRelease(release=ctx.spec_release, by=who, at=ctx.now)
    status = _mark_handled(ctx, ctx.tier.status, "untested_release").overridden(override)
    return ctx.with_status(status)


def _waiting(
    ctx: Context,
    why: Blocker,
    reason: Reason = Reason.TIER_WAITING,
    requeue_after: float = IDLE_SECONDS,
) -> Decision:
    status = ctx.tier.status
    message = f"Waiting: {why.why}"
    events: tuple[EventNote, ...] = ()
    if status.phase is not Phase.WAITING or status.message != message:
        events = (EventNote(reason, f"Release {ctx.spec_release} waits: {why.why}"),)
    new = _base(ctx, Phase.WAITING, message).waiting(why.tier)
    new = _conditions(ctx, new, ready=False, reason=reason, reconciling=True)
    return Decision(status=new, deployment=_hold(ctx), events=events, requeue_after=requeue_after)


def _yield(ctx: Context, why: Blocker) -> Decision:
    """Stop rolling out because a lower tier halted or moved: back to the signed-off template."""
    signed = ctx.tier.status.signed_off_revision
    # _waiting sets the phase and clears the rollout; what it keeps of the stopped one goes here.
    stopped = ctx.tier.status.stopped(signed)
    decision = _waiting(ctx.with_status(stopped), why)
    note = EventNote(
        Reason.YIELDED,
        f"Stopped rolling out revision {ctx.spec_revision}: {why.why}; "
        f"back on {signed or 'nothing (scaled to 0)'} until it moves on",
        warning=True,
    )
    return replace(decision, events=(note,))


def _start(ctx: Context, reason: Reason, message: str) -> Decision:
    rev = ctx.spec_revision
    rollout = RolloutStatus(revision=rev, startedAt=ctx.now)
    checks = [CheckStatus(name=c.name) for c in ctx.tier.spec.health_gate.checks]
    status = ctx.tier.status
    history = rel.started(status.history, ctx.spec_release, rev, ctx.now)
    new = _base(ctx, Phase.PROGRESSING, f"Progressing: rolling out release {ctx.spec_release}").rolling(
        rollout, checks, history
    )
    new = _conditions(ctx, new, ready=False, reason=reason, reconciling=True)
    canary = can.started(ctx.tier.spec, status.signed_off_revision, rev, ctx.now)
    new = new.with_canary(canary)
    events: tuple[EventNote, ...] = (EventNote(reason, message),)
    if canary is not None:
        note = (
            f"Canary of revision {rev} on {canary.replicas} of {ctx.tier.spec.replicas} pods; "
            f"the others stay on {status.signed_off_revision}"
        )
        events = (*events, EventNote(Reason.CANARY_STARTED, note))
    return Decision(
        status=new,
        deployment=DeploymentIntent(Source.SPEC, rev, ctx.tier.spec.replicas),
        events=events,
        requeue_after=1.0,
    )


def _interrupted(ctx: Context) -> Decision | None:
    """What ends a rollout in progress: a newer spec, an abort, a lower tier that halted or moved."""
    rollout = ctx.tier.status.rollout
    if rollout is None or rollout.revision != ctx.spec_revision:
        return _superseded(ctx)
    if _new_request(ctx, "abort"):
        return _fail(ctx, _aborted(ctx), handled="abort")
    if (acted := _fleet_acts(ctx)) is not None:
        return acted
    why = moved_below(ctx.tier.metadata.name, ctx.tier.spec.order, ctx.peers, _gate_release(ctx))
    if why is not None:
        return _yield(ctx, why)
    return None


def _progressing(ctx: Context) -> Decision:
    if (stop := _interrupted(ctx)) is not None:
        return stop
    status = ctx.tier.status
    rollout = status.rollout
    assert rollout is not None  # _interrupted checked it
    rev = ctx.spec_revision
    gate = ctx.tier.spec.health_gate
    wanted = ctx.tier.spec.replicas
    started = rollout.started_at or ctx.now
    if ctx.deployment.rolled_out(rev, wanted):
        new = _base(ctx, Phase.BAKING, f"Baking: revision {rev} Ready, checks running").with_rollout(
            rollout.became_ready(ctx.now)
        )
        new = _conditions(ctx, new, ready=False, reason=Reason.TIER_BAKING, reconciling=True)
        return Decision(
            status=new,
            deployment=DeploymentIntent(Source.SPEC, rev, wanted),
            events=(EventNote(Reason.TIER_BAKING, f"Revision {rev}: {wanted} pods Ready, baking"),),
            requeue_after=0.0,
        )
    deadline = parse_duration(gate.progress_deadline)
    elapsed = (ctx.now - started).total_seconds()
    ready = ctx.deployment.new_ready(rev)
    progress = ctx.deployment.progress_text(rev, wanted)
    if elapsed > deadline:
        obs = Observation(
            name="progressDeadline",
            result=Result.FAIL,
            value=float(ready),
            threshold=f"{wanted} Ready within {gate.progress_deadline}",
            error=f"after {gate.progress_deadline}: {progress}",
        )
        return _fail(ctx, obs, reason=Reason.PROGRESS_DEADLINE_EXCEEDED)
    new = _base(ctx, Phase.PROGRESSING, f"Progressing: revision {rev}: {progress}").model_copy(
        update={"ready_replicas": ready}
    )
    new = _conditions(ctx, new, ready=False, reason=Reason.PODS_NOT_READY, reconciling=True)
    return Decision(
        status=new,
        deployment=DeploymentIntent(Source.SPEC, rev, wanted),
        requeue_after=min(TICK_SECONDS, max(deadline - elapsed, 0.0) + 0.05),
    )


def _baking(ctx: Context) -> Decision:
    if (stop := _interrupted(ctx)) is not None:
        return stop
    status = ctx.tier.status
    rollout = status.rollout
    assert rollout is not None  # _interrupted checked it
    rev = ctx.spec_revision
    if _new_request(ctx, "promote"):
        who = ctx.requests.promote or ""
        return _sign_off(
            ctx,
            status.with_rollout(rollout.promoted(who)),
            EventNote(Reason.PROMOTED, f"Revision {rev} promoted by {who}; rest of bake skipped"),
            handled="promote",
        )
    gate = ctx.tier.spec.health_gate
    interval = parse_duration(gate.interval)
    if ctx.observations is None:
        wait = interval
        if rollout.last_evaluated_at is not None:
            wait = interval - (ctx.now - rollout.last_evaluated_at).total_seconds()
        return Decision(
            status=status,
            deployment=DeploymentIntent(Source.SPEC, rev, ctx.tier.spec.replicas),
            requeue_after=max(min(wait, TICK_SECONDS), 0.0),
        )
    return _judge(ctx, ctx.observations)


def _judge(ctx: Context, observations: Sequence[Observation]) -> Decision:
    """Fold one evaluation into the rollout; halt, sign off, or keep baking (or watching)."""
    status = ctx.tier.status
    rollout = status.rollout
    assert rollout is not None  # _baking and _watch checked it
    in_watch = status.phase is Phase.SIGNED_OFF
    gate = ctx.tier.spec.health_gate
    rev = ctx.spec_revision
    result = verdict(observations)
    checks = _fold_checks(status.checks, observations, ctx.now)
    events: list[EventNote] = []
    for o in observations:
        if o.result is Result.FAIL:
            events.append(
                EventNote(
                    Reason.CHECK_FAILED,
                    f"Check {o.name} failed on revision {rev}: {o.error or ''} "
                    f"(value {_num(o.value)}, threshold {o.threshold or '-'})",
                    warning=True,
                )
            )
    match result:
        case Result.PASS:
            rollout = rollout.passed(ctx.now)
        case Result.FAIL:
            rollout = rollout.failed(ctx.now)
        case Result.INCONCLUSIVE:
            rollout = rollout.inconclusive(ctx.now)
        case _:
            assert_never(result)
    status = status.with_rollout(rollout, checks)
    interval = parse_duration(gate.interval)
    halt_reason = Reason.WATCH_FAILED if in_watch else Reason.TIER_HALTED
    if result is Result.FAIL and rollout.consecutive_failures >= gate.failure_limit:
        worst = next(o for o in observations if o.result is Result.FAIL)
        return _fail(ctx.with_status(status), worst, reason=halt_reason, extra_events=tuple(events))
    if result is Result.INCONCLUSIVE:
        limit = parse_duration(gate.inconclusive_limit or gate.progress_deadline)
        since = rollout.first_inconclusive_at or ctx.now
        if (ctx.now - since).total_seconds() > limit:
            worst = next(o for o in observations if o.result is Result.INCONCLUSIVE)
            stuck = replace(
                worst,
                result=Result.FAIL,
                error=f"inconclusive for longer than {gate.inconclusive_limit or gate.progress_deadline}: "
                f"{worst.error or 'no data'}",
            )
            return _fail(ctx.with_status(status), stuck, reason=halt_reason, extra_events=tuple(events))
    if in_watch:
        note = {
            Result.PASS: "",
            Result.FAIL: f"; watch: {rollout.consecutive_failures}/{gate.failure_limit} failing evaluations",
            Result.INCONCLUSIVE: "; watch: checks inconclusive",
        }[result]
        decision = _signed_off(ctx.with_status(status), status, events=tuple(events), note=note)
        return replace(decision, requeue_after=min(decision.requeue_after, interval))
    bake = parse_duration(gate.bake)
    if (
        result is Result.PASS
        and rollout.bake_since is not None
        and (ctx.now - rollout.bake_since).total_seconds() >= bake
        and not ctx.requests.paused
    ):
        return _sign_off(
            ctx,
            status,
            EventNote(Reason.TIER_SIGNED_OFF, f"Revision {rev} signed off after a {gate.bake} bake"),
        )
    baked = 0.0 if rollout.bake_since is None else (ctx.now - rollout.bake_since).total_seconds()
    message = {
        Result.PASS: f"Baking: revision {rev}, {baked:.0f}s of {gate.bake} passing",
        Result.FAIL: f"Baking: revision {rev}, {rollout.consecutive_failures}/{gate.failure_limit} "
        "failing evaluations",
        Result.INCONCLUSIVE: f"Baking: revision {rev}, checks inconclusive",
    }[result]
    if ctx.requests.paused and result is Result.PASS:
        message += " (paused: will not sign off until resumed)"
    new = status.model_copy(
        update={
            "phase": Phase.BAKING,
            "message": message,
            "observed_generation": ctx.tier.metadata.generation,
            "revision": rev,
        }
    )
    reason = {
        Result.PASS: Reason.TIER_BAKING,
        Result.FAIL: Reason.CHECK_FAILED,
        Result.INCONCLUSIVE: Reason.CHECK_INCONCLUSIVE,
    }[result]
    new = _conditions(ctx, new, ready=False, reason=reason, reconciling=True)
    return Decision(
        status=new,
        deployment=DeploymentIntent(Source.SPEC, rev, ctx.tier.spec.replicas),
        events=tuple(events),
        requeue_after=min(interval, TICK_SECONDS),
    )


def _sign_off(
    ctx: Context, status: SenderTierStatus, note: EventNote, handled: str | None = None
) -> Decision:
    if can.running(status, ctx.spec_revision):
        return _canary_passed(ctx, status, note if handled else None, handled)
    rev = ctx.spec_revision
    watch = parse_duration(ctx.tier.spec.health_gate.watch)
    rollout = (status.rollout or RolloutStatus(revision=rev)).signed_off(ctx.now, watch)
    signed = status.model_copy(
        update={
            "signed_off_revision": rev,
            "rollout": rollout,
            "halt": None,
            "history": rel.marked(status.history, rev, lambda e: e.signed_off(ctx.now)),
        }
    )
    if handled is not None:
        signed = _mark_handled(ctx, signed, handled)
    decision = _signed_off(ctx.with_status(signed), signed, events=(note,))
    return replace(decision, save_signed_off=True)


def _watch(ctx: Context) -> Decision:
    """Signed off at the spec: judge the watch while it lasts, then record that it passed."""
    status = ctx.tier.status
    rev = ctx.spec_revision
    rollout = status.rollout
    if watching(ctx):
        if ctx.observations is not None:
            return _judge(ctx, ctx.observations)
        return _signed_off(ctx, status, events=())
    entry = rel.entry_of(status.history, rev)
    ended = (
        rollout is not None
        and rollout.revision == rev
        and rollout.watch_until is not None
        and entry is not None
        and entry.watch_passed_at is None
    )
    if not ended:
        return _signed_off(ctx, status, events=())
    passed = status.with_history(rel.marked(status.history, rev, lambda e: e.watch_passed(ctx.now)))
    gate = ctx.tier.spec.health_gate
    note = EventNote(
        Reason.WATCH_PASSED, f"Release {ctx.spec_release} passed its {gate.watch} watch after sign-off"
    )
    return _signed_off(ctx.with_status(passed), passed, events=(note,))


def _signed_off(
    ctx: Context, status: SenderTierStatus, events: tuple[EventNote, ...], note: str = ""
) -> Decision:
    rev = ctx.spec_revision
    wanted = ctx.tier.spec.replicas
    ready = ctx.deployment.rolled_out(rev, wanted)
    release = ctx.spec_release
    message = (
        f"Signed off: release {release}"
        if ready
        else f"Signed off: release {release}, {ctx.deployment.ready}/{wanted} pods Ready"
    )
    is_watching = watching(ctx.with_status(status.in_phase(Phase.SIGNED_OFF)))
    if is_watching and status.rollout is not None and status.rollout.watch_until is not None:
        message += f", watching until {status.rollout.watch_until.isoformat()}"
    message += note
    held = fleet_halt(ctx) if ctx.tier.spec.on_fleet_halt is OnFleetHalt.HOLD else None
    if held is not None:
        peer, bad = held
        message += f" (held: tier {peer.name} halted release {bad}; onFleetHalt: Hold)"
        if ctx.tier.status.message != message:
            events = (
                *events,
                EventNote(
                    Reason.FLEET_HELD,
                    f"Kept release {bad}: tier {peer.name} halted it, and onFleetHalt is Hold",
                    warning=True,
                ),
            )
    new = status.model_copy(
        update={
            "phase": Phase.SIGNED_OFF,
            "message": message,
            "release": release,
            "revision": rev,
            "current_revision": rev,
            "observed_generation": ctx.tier.metadata.generation,
            "waiting_for": None,
            "ready_replicas": ctx.deployment.ready if ctx.deployment.revision == rev else 0,
        }
    )
    new = _conditions(
        ctx,
        new,
        ready=ready,
        reason=Reason.AT_REVISION if ready else Reason.REPLICAS_NOT_READY,
        reconciling=not ready,
        signed_off=True,
        watching=is_watching,
    )
    return Decision(
        status=new,
        deployment=DeploymentIntent(Source.SPEC, rev, wanted),
        events=events,
        requeue_after=(
            min(TICK_SECONDS, parse_duration(ctx.tier.spec.health_gate.interval))
            if is_watching
            else TICK_SECONDS
            if not ready
            else IDLE_SECONDS
        ),
    )


def _superseded(ctx: Context) -> Decision:
    """The spec moved on while an older revision was rolling out: start over from the gate."""
    status = ctx.tier.status.cleared()
    return _idle(ctx.with_status(status))


def _halted(ctx: Context) -> Decision:
    status = ctx.tier.status
    halt = status.halt
    rev = ctx.spec_revision
    if halt is None or halt.revision != rev:
        return _idle(ctx.with_status(status.cleared()))
    if _new_request(ctx, "retry"):
        why = blocker(
            ctx.tier.metadata.name, ctx.tier.spec.order, ctx.peers, ctx.requests.paused, _gate_release(ctx)
        )
        if why is None and _refused(ctx) is None:
            retried = _mark_handled(ctx, status, "retry")
            return _start(ctx.with_status(retried), Reason.RETRIED, f"Retrying revision {rev} on request")
    intent = (
        _hold(ctx)
        if ctx.tier.spec.on_failure is OnFailure.ROLLBACK
        else DeploymentIntent(Source.SPEC, rev, ctx.tier.spec.replicas)
    )
    new = status.observed(ctx.tier.metadata.generation)
    new = _conditions(ctx, new, ready=False, reason=_halt_reason(status), reconciling=False, halted=True)
    replay, refresh = _auto_replay(ctx, status)
    return Decision(
        status=new,
        deployment=intent,
        requeue_after=TICK_SECONDS if replay or refresh else IDLE_SECONDS,
        replay=replay,
        refresh_replay=refresh,
    )


def _auto_replay(ctx: Context, status: SenderTierStatus) -> tuple[ReplayRequest | None, str | None]:
    """With ``replay.auto``, replay a rolled-back revision's discards once the tier is healthy."""
    halt = status.halt
    if not ctx.tier.spec.replay.auto or status.phase is not Phase.ROLLED_BACK or halt is None:
        return None, None
    job = status.replay_job
    if job is not None and job.revision == halt.revision:
        return None, (job.id if job.state not in REPLAY_DONE else None)
    signed = status.signed_off_revision
    healthy = signed is not None and ctx.deployment.rolled_out(signed, ctx.tier.spec.replicas)
    if not healthy:
        return None, None
    # Until now, not until windowEnd: the bad pods drained (and may have discarded) after the
    # decision to roll back, and only once the tier is healthy again are they all gone.
    return ReplayRequest(ctx.tier.metadata.name, halt.revision, halt.window_start, ctx.now), None


def _fail(
    ctx: Context,
    obs: Observation,
    reason: Reason = Reason.TIER_HALTED,
    handled: str | None = None,
    extra_events: tuple[EventNote, ...] = (),
) -> Decision:
    status = ctx.tier.status
    rev = ctx.spec_revision
    rollback = ctx.tier.spec.on_failure is OnFailure.ROLLBACK
    started = status.rollout.started_at if status.rollout and status.rollout.started_at else ctx.now
    if status.canary is not None and status.canary.revision == rev:
        started = min(started, status.canary.started_at)
    target = status.signed_off_revision
    if target == rev:
        # Halted in the watch: the release itself was signed off, so go back to the one before it.
        target = rel.last_good_before(status.history, ctx.spec_release)
    history = rel.marked(status.history, rev, lambda e: e.halted(ctx.now))
    if rollback:
        history = rel.marked(history, rev, lambda e: e.rolled_back(ctx.now))
    sentence = (
        f"Check {obs.name} failed on revision {rev}: {obs.error or 'failed'}"
        f" (value {_num(obs.value)}, threshold {obs.threshold or '-'})"
    )
    halt = HaltStatus(
        check=obs.name,
        query=obs.query,
        value=obs.value,
        threshold=obs.threshold,
        revision=rev,
        release=ctx.spec_release,
        during=_during(ctx),
        message=sentence,
        windowStart=started,
        windowEnd=ctx.now if rollback else None,
        at=ctx.now,
    )
    phase = Phase.ROLLED_BACK if rollback else Phase.HALTED
    tail = (
        f"; rolled back to {target}"
        if rollback and target
        else "; scaled to 0 (no signed-off revision)"
        if rollback
        else "; paused for a person"
    )
    new = status.model_copy(
        update={
            "phase": phase,
            "halt": halt,
            "message": f"Halted: {sentence}{tail}",
            "revision": rev,
            "release": ctx.spec_release,
            "observed_generation": ctx.tier.metadata.generation,
            "current_revision": target if rollback else rev,
            "signed_off_revision": target,
            "history": history,
        }
    )
    if handled is not None:
        new = _mark_handled(ctx, new, handled)
    hctx = ctx.with_status(new)
    new = _conditions(hctx, new, ready=False, reason=reason, reconciling=False, halted=True)
    events = [*extra_events, EventNote(Reason.TIER_HALTED, f"Halted: {sentence}", warning=True)]
    if rollback:
        events.append(
            EventNote(
                Reason.TIER_ROLLED_BACK,
                f"Rolled back from {rev} to {target or 'nothing (scaled to 0)'}",
                warning=True,
            )
        )
    intent = _hold(hctx) if rollback else DeploymentIntent(Source.SPEC, rev, ctx.tier.spec.replicas)
    return Decision(status=new, deployment=intent, events=tuple(events), requeue_after=TICK_SECONDS)


def _fleet_acts(ctx: Context) -> Decision | None:
    """The fleet policy's decision when another tier halted on a release this one runs, or None."""
    halt = fleet_halt(ctx)
    if halt is None:
        return None
    if ctx.tier.spec.on_fleet_halt is OnFleetHalt.ROLLBACK and _higher_tiers_first(ctx, *halt):
        return _stay(ctx)
    return _fleet_policy(ctx, *halt)


def _higher_tiers_first(ctx: Context, peer: Peer, bad: str) -> bool:
    """True while a higher-order tier on ``bad`` has still to record its own fleet rollback.

    Priority traffic is restored first: a tier rolls back only once every higher tier that runs the
    release and rolls back has written its rollback (one status write, not its pods), for at most
    ``FLEET_ORDER_WAIT`` seconds after the halt, so a tier that never acts holds nobody up.
    """
    halted_at = peer.halted_at(bad)
    if halted_at is None or (ctx.now - halted_at).total_seconds() >= FLEET_ORDER_WAIT:
        return False
    me = ctx.tier.metadata.name
    return any(
        p.order > ctx.tier.spec.order
        and p.name != me
        and p.on_fleet_halt is OnFleetHalt.ROLLBACK
        and p.runs(bad)
        for p in ctx.peers
    )


def _stay(ctx: Context) -> Decision:
    """Change nothing and look again shortly (the fleet policy waits for a higher tier's write)."""
    status = ctx.tier.status
    if status.phase in LIVE_PHASES:
        intent = DeploymentIntent(Source.SPEC, ctx.spec_revision, ctx.tier.spec.replicas)
    else:
        intent = _hold(ctx)
    return Decision(status=status, deployment=intent, requeue_after=FLEET_ORDER_POLL)


def _fleet_policy(ctx: Context, peer: Peer, bad: str) -> Decision | None:
    """Another tier halted on a release this one runs: roll back (the default), or keep it (Hold)."""
    match ctx.tier.spec.on_fleet_halt:
        case OnFleetHalt.ROLLBACK:
            return _fleet_rollback(ctx, peer, bad)
        case OnFleetHalt.HOLD:
            return None
        case _:
            assert_never(ctx.tier.spec.on_fleet_halt)


def _fleet_rollback(ctx: Context, peer: Peer, bad: str) -> Decision:
    """Go back to the last signed-off release before ``bad``, at once: no tier waits for another."""
    status = ctx.tier.status
    rolling = status.phase in LIVE_PHASES and ctx.spec_release == bad
    bad_rev = ctx.spec_revision if rolling else (status.current_revision or ctx.spec_revision)
    entry = rel.entry_of(status.history, bad_rev)
    started = entry.started_at if entry is not None else (status.rollout and status.rollout.started_at)
    target = rel.last_good_before(status.history, bad)
    if not status.history and status.signed_off_revision != bad_rev:
        target = status.signed_off_revision
    cause = f"tier {peer.name} halted release {bad}"
    back = f"back on {target}" if target else "scaled to 0 (no signed-off release before it)"
    halt = HaltStatus(
        check="fleet",
        revision=bad_rev,
        release=bad,
        during=_during(ctx),
        cause=cause,
        haltedBy=peer.name,
        message=f"Rolled back: {cause}",
        windowStart=started or ctx.now,
        windowEnd=ctx.now,
        at=ctx.now,
    )
    new = _base(ctx, Phase.ROLLED_BACK, f"Rolled back: {cause}; {back}").model_copy(
        update={
            "halt": halt,
            "rollout": None,
            "checks": [],
            "waiting_for": None,
            "signed_off_revision": target,
            "current_revision": target,
            "history": rel.marked(status.history, bad_rev, lambda e: e.rolled_back(ctx.now)),
        }
    )
    hctx = ctx.with_status(new)
    new = _conditions(hctx, new, ready=False, reason=Reason.FLEET_ROLLED_BACK, reconciling=False, halted=True)
    note = EventNote(
        Reason.FLEET_ROLLED_BACK,
        f"Rolled back from release {bad} ({bad_rev}) to {target or 'nothing (scaled to 0)'}: {cause}",
        warning=True,
    )
    return Decision(status=new, deployment=_hold(hctx), events=(note,), requeue_after=TICK_SECONDS)


def _during(ctx: Context) -> During:
    """Where this tier is with its release now, for a halt record."""
    phase = ctx.tier.status.phase
    if phase is Phase.PROGRESSING:
        return During.PROGRESS
    if phase is Phase.BAKING:
        return During.BAKE
    return During.WATCH if watching(ctx) else During.SIGNED_OFF


def invalid_spec(status: SenderTierStatus, problem: str, generation: int, now: datetime) -> SenderTierStatus:
    """The status of a tier whose spec the operator cannot use: phase kept, ``InvalidSpec`` True.

    Nothing else moves: the Deployment is left as it is until the spec is fixed.
    """
    message = f"Invalid spec: {problem}"
    conds = tuple(status.conditions)
    reason = Reason.INVALID_SPEC
    conds = cond.set_condition(conds, cond.INVALID_SPEC, "True", reason, message, generation, now)
    conds = cond.set_condition(conds, cond.STALLED, "True", reason, message, generation, now)
    conds = cond.set_condition(conds, cond.RECONCILING, "False", reason, message, generation, now)
    return status.model_copy(
        update={"message": message, "observed_generation": generation, "conditions": list(conds)}
    )


def rollback_target(decision: Decision, missing: str | None, generation: int, now: datetime) -> Decision:
    """The decision with ``RollbackTargetMissing`` True while the template the tier must hold
    cannot be found (``missing`` says why), and without it once it can.

    One warning Event when the condition is first set; the status holds it after that, so a
    tier stuck on a lost ControllerRevision does not post an Event on every reconcile.
    """
    conds = decision.status.conditions
    present = any(c.type == cond.ROLLBACK_TARGET_MISSING for c in conds)
    if missing is None:
        if not present:
            return decision
        kept = [c for c in conds if c.type != cond.ROLLBACK_TARGET_MISSING]
        return replace(decision, status=decision.status.with_conditions(kept))
    reason, kind = Reason.ROLLBACK_TARGET_MISSING, cond.ROLLBACK_TARGET_MISSING
    updated = cond.set_condition(conds, kind, "True", reason, missing, generation, now)
    events = decision.events if present else (*decision.events, EventNote(reason, missing, warning=True))
    return replace(decision, status=decision.status.with_conditions(list(updated)), events=events)


# Helpers.


def _seen(ctx: Context) -> Context:
    """Stamp when the spec's revision was first seen: the start of its settle time."""
    status = ctx.tier.status
    if status.revision == ctx.spec_revision and status.revision_seen_at is not None:
        return ctx
    return ctx.with_status(status.seen(ctx.now))


def _hold(ctx: Context) -> DeploymentIntent:
    """Keep the last signed-off template; with none, keep no pods."""
    signed = ctx.tier.status.signed_off_revision
    if signed is None:
        return DeploymentIntent(Source.NONE, None, 0)
    return DeploymentIntent(Source.SIGNED_OFF, signed, ctx.tier.spec.replicas)


def _base(ctx: Context, phase: Phase, message: str) -> SenderTierStatus:
    return ctx.tier.status.moved(
        phase, message, ctx.spec_revision, ctx.spec_release, ctx.tier.metadata.generation
    )


def _conditions(
    ctx: Context,
    status: SenderTierStatus,
    *,
    ready: bool,
    reason: Reason,
    reconciling: bool,
    signed_off: bool = False,
    halted: bool = False,
    watching: bool = False,
) -> SenderTierStatus:
    gen = ctx.tier.metadata.generation
    now = ctx.now
    msg = status.message or ""
    conds = tuple(status.conditions)
    conds = cond.set_condition(conds, cond.READY, _tf(ready), reason, msg, gen, now)
    conds = cond.set_condition(conds, cond.RECONCILING, _tf(reconciling), reason, msg, gen, now)
    conds = cond.set_condition(conds, cond.STALLED, _tf(halted), reason, msg, gen, now)
    conds = cond.set_condition(conds, cond.SIGNED_OFF, _tf(signed_off), reason, msg, gen, now)
    conds = cond.set_condition(conds, cond.HALTED, _tf(halted), reason, msg, gen, now)
    watch_reason = Reason.WATCHING if watching else reason
    conds = cond.set_condition(conds, cond.WATCHING, _tf(watching), watch_reason, msg, gen, now)
    conds = tuple(c for c in conds if c.type != cond.INVALID_SPEC)
    return status.with_conditions(list(conds))


def _tf(value: bool) -> cond.ConditionStatus:
    return "True" if value else "False"


def _fold_checks(
    previous: Sequence[CheckStatus], observations: Sequence[Observation], now: datetime
) -> list[CheckStatus]:
    by_name = {c.name: c for c in previous}
    out = []
    for o in observations:
        old = by_name.get(o.name, CheckStatus(name=o.name))
        passed = o.result is Result.PASS
        failed = o.result is Result.FAIL
        out.append(
            CheckStatus(
                name=o.name,
                result=o.result.value,
                value=o.value,
                threshold=o.threshold,
                passes=old.passes + int(passed),
                failures=old.failures + int(failed),
                consecutiveFailures=old.consecutive_failures + 1 if failed else 0,
                lastError=o.error,
                lastEvaluated=now,
            )
        )
    return out


def _new_request(ctx: Context, kind: str) -> bool:
    token = getattr(ctx.requests, kind)
    return bool(token) and ctx.tier.status.handled_requests.get(kind) != token


def _mark_handled(ctx: Context, status: SenderTierStatus, kind: str) -> SenderTierStatus:
    token = getattr(ctx.requests, kind) or ""
    return status.handled(kind, token)


def _aborted(ctx: Context) -> Observation:
    return Observation(
        name="abort",
        result=Result.FAIL,
        error=f"aborted on request by {ctx.requests.abort}",
    )


def _halt_reason(status: SenderTierStatus) -> Reason:
    return Reason.TIER_ROLLED_BACK if status.phase is Phase.ROLLED_BACK else Reason.TIER_HALTED


def _num(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


# The canary step inside a tier (domain/canary.py holds its rules).


def step_context(ctx: Context) -> Context:
    """The context the phase functions judge: during a canary step, the tier is its canary pods.

    Its replicas, bake and Deployment are the canary's; :func:`decide` turns the decision back into
    the whole tier's Deployments.
    """
    status = ctx.tier.status
    if not can.running(status, ctx.spec_revision) or status.canary is None:
        return ctx
    spec = ctx.tier.spec
    tier = ctx.tier.as_canary_step(status.canary.replicas, can.bake(spec))
    return replace(ctx, tier=tier, deployment=ctx.canary_deployment)


def _shaped(ctx: Context, stepped: bool, decision: Decision) -> Decision:
    """A decision with the whole tier's Deployments: the stable one and the canary beside it."""
    rev = ctx.spec_revision
    total = ctx.tier.spec.replicas
    status = can.settled(decision.status, rev, ctx.now)
    stable = decision.deployment
    if stepped and stable.source is not Source.NONE:
        stable = replace(stable, replicas=total)
    canary = status.canary
    intent = None
    if canary is not None and can.running(status, rev):
        held = _hold(ctx)
        stable = replace(held, replicas=max(held.replicas - canary.replicas, 0))
        intent = DeploymentIntent(Source.SPEC, rev, canary.replicas)
        prefix = can.message_prefix(canary, total)
        if status.message and not status.message.startswith(prefix):
            status = status.with_message(prefix + status.message)
    elif canary is not None and can.keeps_pods(status, rev):
        intent = DeploymentIntent(Source.SPEC, rev, canary.replicas)
    elif can.failed_here(status, rev) and stable.source is Source.SPEC:
        stable = _hold(ctx)
    return replace(decision, status=status, deployment=stable, canary=intent)


def _canary_passed(
    ctx: Context, status: SenderTierStatus, note: EventNote | None, handled: str | None
) -> Decision:
    """The canary passed its bake: the whole tier takes the release, with a fresh deadline and bake."""
    canary = status.canary
    assert canary is not None  # can.running checked it
    rev = ctx.spec_revision
    checks = [CheckStatus(name=c.name) for c in ctx.tier.spec.health_gate.checks]
    message = f"Progressing: canary passed, rolling out release {ctx.spec_release} to the whole tier"
    new = _base(ctx.with_status(status), Phase.PROGRESSING, message).model_copy(
        update={
            "rollout": RolloutStatus(revision=rev, startedAt=ctx.now),
            "checks": checks,
            "canary": canary.ended(CanaryPhase.PASSED, ctx.now),
        }
    )
    if handled is not None:
        new = _mark_handled(ctx, new, handled)
    new = _conditions(ctx, new, ready=False, reason=Reason.CANARY_PASSED, reconciling=True)
    passed = EventNote(
        Reason.CANARY_PASSED,
        f"Canary of revision {rev} passed on {canary.replicas} pods; the whole tier takes it",
    )
    return Decision(
        status=new,
        deployment=DeploymentIntent(Source.SPEC, rev, ctx.tier.spec.replicas),
        events=(*((note,) if note else ()), passed),
        requeue_after=1.0,
    )
