"""One reconcile of one SenderTier: observe, ask the domain, write status, converge, tell people.

The order is the crash-safety argument: the status (the record of intent) is written first, guarded
by ``resourceVersion``; the Deployment is converged from that decision afterwards; Events last. An
operator killed between any two steps finds the intent in status and finishes the job. The same
status write carries the notifications the transition makes (``status.notifications``); the
leader's notifier delivers them off this path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, assert_never

import httpx
from pydantic import ValidationError

from tiergate.api.annotations import (
    ANNOTATION_ABORT,
    ANNOTATION_APPROVED_BY,
    ANNOTATION_APPROVED_RELEASE,
    ANNOTATION_FREEZE_REASON,
    ANNOTATION_FROZEN_BY,
    ANNOTATION_FROZEN_UNTIL,
    ANNOTATION_PAUSED,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    ANNOTATION_UNTESTED_RELEASE,
)
from tiergate.api.v1alpha1 import (
    HALTED_PHASES,
    Check,
    HistoryEntry,
    OnFleetHalt,
    Phase,
    ReplayJobStatus,
    SenderTier,
    SenderTierStatus,
)
from tiergate.clients.kube import Kube
from tiergate.clients.probe import probe_all
from tiergate.clients.prometheus import Prometheus
from tiergate.clients.replay import ReplayApiError, ReplayClient, halt_filter
from tiergate.controller import metrics
from tiergate.controller.notifier import Notifier
from tiergate.domain import checks as chk
from tiergate.domain import evaluation as ev
from tiergate.domain import notifications as notes
from tiergate.domain.changecontrol import freeze_from
from tiergate.domain.checks import Observation, Result
from tiergate.domain.reasons import Reason
from tiergate.domain.revision import revision_of
from tiergate.domain.rollout import (
    IDLE_SECONDS,
    Context,
    Decision,
    DeploymentIntent,
    DeploymentView,
    EventNote,
    Peer,
    Requests,
    Source,
    check_env,
    decide,
    evaluation_due,
    invalid_spec,
    pods_observation,
    rollback_target,
)
from tiergate.domain.workload import (
    ANNOTATION_APPLIED,
    LABEL_REVISION,
    LABEL_TIER,
    canary_manifest,
    canary_name,
    deployment_manifest,
)
from tiergate.errors import PrometheusUnavailable, TransientError

log = logging.getLogger("tiergate.controller")

REVISION_HISTORY = 10


@dataclass
class Runtime:
    """What every reconcile shares: the clients, and a wake-up per tier for prompt reactions."""

    kube: Kube
    prometheus: Prometheus | None
    replay: ReplayClient | None = None
    notifier: Notifier | None = None
    wakeups: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    templates: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def wakeup(self, namespace: str, name: str) -> asyncio.Event:
        """The event that wakes a tier's loop early."""
        return self.wakeups.setdefault((namespace, name), asyncio.Event())

    def poke(self, namespace: str, name: str) -> None:
        """Wake a tier's loop now."""
        self.wakeup(namespace, name).set()


def requests_from(annotations: Mapping[str, str]) -> Requests:
    """On-call requests as the annotations carry them."""
    return Requests(
        paused=annotations.get(ANNOTATION_PAUSED, "").lower() == "true",
        retry=annotations.get(ANNOTATION_RETRY) or None,
        promote=annotations.get(ANNOTATION_PROMOTE) or None,
        abort=annotations.get(ANNOTATION_ABORT) or None,
        untested_release=annotations.get(ANNOTATION_UNTESTED_RELEASE) or None,
        approved_release=annotations.get(ANNOTATION_APPROVED_RELEASE) or None,
        approved_by=annotations.get(ANNOTATION_APPROVED_BY) or None,
        freeze=freeze_from(
            annotations.get(ANNOTATION_FROZEN_UNTIL),
            annotations.get(ANNOTATION_FREEZE_REASON),
            annotations.get(ANNOTATION_FROZEN_BY),
        ),
    )


def peer_from(body: Mapping[str, Any]) -> Peer:
    """A fleet member as another tier sees it."""
    spec = body.get("spec", {})
    status = body.get("status", {}) or {}
    annotations = body.get("metadata", {}).get("annotations", {}) or {}
    phase = status.get("phase")
    revision = revision_of(spec.get("template", {}))
    halt = status.get("halt") or {}
    history = tuple(_history(status.get("history")))
    return Peer(
        name=body["metadata"]["name"],
        order=int(spec.get("order", 0)),
        spec_revision=revision,
        signed_off_revision=status.get("signedOffRevision"),
        phase=Phase(phase) if isinstance(phase, str) and phase in Phase._value2member_map_ else None,
        paused=requests_from(annotations).paused,
        release=str(spec.get("release") or revision),
        history=history,
        halt_release=halt.get("release") if halt and not halt.get("haltedBy") else None,
        current_revision=status.get("currentRevision"),
        on_fleet_halt=_on_fleet_halt(spec.get("onFleetHalt")),
    )


def _on_fleet_halt(raw: Any) -> OnFleetHalt:
    """A peer's fleet policy; anything unreadable counts as the default, Rollback."""
    try:
        return OnFleetHalt(raw)
    except ValueError:
        return OnFleetHalt.ROLLBACK


def _history(raw: Any) -> list[HistoryEntry]:
    """A peer's history as far as it parses; an entry a newer operator wrote oddly is skipped."""
    out = []
    for item in raw if isinstance(raw, list) else []:
        try:
            out.append(HistoryEntry.model_validate(item))
        except ValidationError:
            continue
    return out


def deployment_view(body: Mapping[str, Any]) -> DeploymentView:
    """The facts about a Deployment that the state machine reads."""
    meta = body.get("metadata", {})
    spec = body.get("spec", {})
    status = body.get("status", {}) or {}
    labels = spec.get("template", {}).get("metadata", {}).get("labels", {}) or {}
    return DeploymentView(
        exists=True,
        revision=labels.get(LABEL_REVISION),
        replicas=int(spec.get("replicas", 1)),
        total=int(status.get("replicas", 0) or 0),
        updated=int(status.get("updatedReplicas", 0) or 0),
        ready=int(status.get("readyReplicas", 0) or 0),
        available=int(status.get("availableReplicas", 0) or 0),
        generation=int(meta.get("generation", 0) or 0),
        observed_generation=int(status.get("observedGeneration", 0) or 0),
        applied=(meta.get("annotations") or {}).get(ANNOTATION_APPLIED),
    )


def _dump(status: SenderTierStatus) -> dict[str, Any]:
    out: dict[str, Any] = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    return out


async def evaluate(ctx: Context, runtime: Runtime, namespace: str) -> tuple[Observation, ...]:
    """Run the whole health stack once: fetch what each check needs, and let the domain judge it."""
    env = check_env(ctx, namespace)

    async def value(promql: str) -> float | None:
        if runtime.prometheus is None:
            raise PrometheusUnavailable("no Prometheus configured (--prometheus-url)")
        return await runtime.prometheus.value(promql)

    async def fetch(need: ev.Need) -> ev.Fetched:
        match need:
            case ev.Queries(queries=queries):
                return await asyncio.gather(*(value(q) for q in queries))
            case ev.PodProbe():
                pods = await runtime.kube.list_pods(namespace, need.selector)
                ips = [p.ip for p in pods if p.ip]
                results = await probe_all(ips, need.port, need.path, need.scheme, need.timeout_seconds)
                failing = [f"{ip}: {detail}" for ip, ok, detail in results if not ok]
                failing += [f"{p.name}: no pod IP" for p in pods if not p.ip]
                return ev.Probed(sum(1 for _, ok, _ in results if ok), len(pods), tuple(failing[:3]))
            case _:
                assert_never(need)

    async def one(check: Check) -> Observation:
        try:
            return ev.judge(check, env, await fetch(ev.need(check, env)))
        except PrometheusUnavailable as exc:
            return Observation(check.name, Result.INCONCLUSIVE, error=str(exc))

    results = await asyncio.gather(*(one(c) for c in ctx.tier.spec.health_gate.checks))
    return (pods_observation(ctx), *results)


async def _template_for(
    runtime: Runtime, tier: SenderTier, raw_spec: Mapping[str, Any], intent: DeploymentIntent
) -> dict[str, Any] | None:
    if intent.source is Source.SPEC:
        template: dict[str, Any] = dict(raw_spec["template"])
        return template
    assert intent.revision is not None
    key = (tier.metadata.namespace, tier.metadata.name, intent.revision)
    if key not in runtime.templates:
        data = await runtime.kube.read_revision(key[0], f"{key[1]}-{key[2]}")
        if data is None:
            return None
        runtime.templates[key] = data["template"]
    return runtime.templates[key]


async def converge(
    runtime: Runtime,
    tier: SenderTier,
    intent: DeploymentIntent,
    current: DeploymentView,
    template: Mapping[str, Any] | None,
) -> None:
    """Make the Deployment match the intent (``template`` is the intent's, as `target` found it)."""
    ns, name = tier.metadata.namespace, tier.metadata.name
    if intent.source is Source.NONE:
        if current.exists and current.replicas != 0:
            await runtime.kube.scale_deployment(ns, name, 0)
        return
    if template is None:
        return
    assert intent.revision is not None
    await _apply(
        runtime, tier, deployment_manifest(tier, dict(template), intent.revision, intent.replicas), current
    )


async def target(
    runtime: Runtime, tier: SenderTier, raw_spec: Mapping[str, Any], intent: DeploymentIntent
) -> tuple[dict[str, Any] | None, str | None]:
    """The template the intent asks for, and why it cannot be had (None when it can, or when
    the intent holds no pods)."""
    if intent.source is Source.NONE:
        return None, None
    template = await _template_for(runtime, tier, raw_spec, intent)
    if template is None:
        return None, f"the signed-off revision {intent.revision} has no ControllerRevision to roll back to"
    return template, None


async def _apply(
    runtime: Runtime, tier: SenderTier, manifest: Mapping[str, Any], current: DeploymentView
) -> None:
    """Apply a tier's Deployment unless the one in place was applied from the same fields."""
    meta, spec = manifest["metadata"], manifest["spec"]
    if current.applied == meta["annotations"][ANNOTATION_APPLIED]:
        return
    await runtime.kube.apply_deployment(manifest)
    log.info(
        "Applied Deployment sendertier=%s/%s deployment=%s revision=%s replicas=%d",
        tier.metadata.namespace,
        tier.metadata.name,
        meta["name"],
        meta["labels"][LABEL_REVISION],
        spec["replicas"],
    )


async def converge_canary(
    runtime: Runtime,
    tier: SenderTier,
    raw_spec: Mapping[str, Any],
    intent: DeploymentIntent | None,
    current: DeploymentView,
) -> None:
    """Give the canary Deployment the intent's pods, or scale it to none when there is no canary.

    An unused canary Deployment stays at 0 replicas (the operator may not delete Deployments; the
    tier's deletion collects it), and the next canary reuses it.
    """
    ns, name = tier.metadata.namespace, tier.metadata.name
    if intent is None or intent.revision is None:
        if current.exists and current.replicas != 0:
            await runtime.kube.scale_deployment(ns, canary_name(name), 0)
            log.info("Scaled canary Deployment to 0 sendertier=%s/%s", ns, name)
        return
    await _apply(
        runtime, tier, canary_manifest(tier, raw_spec["template"], intent.revision, intent.replicas), current
    )


async def save_signed_off(runtime: Runtime, tier: SenderTier, raw_spec: Mapping[str, Any], rev: str) -> None:
    """Keep the signed-off template in a ControllerRevision owned by the tier; prune old ones."""
    ns, name = tier.metadata.namespace, tier.metadata.name
    selector = f"{LABEL_TIER}={name}"
    existing = await runtime.kube.list_revisions(ns, selector)
    number = max((n for _, n in existing), default=0) + 1
    owner = {
        "apiVersion": tier.api_version,
        "kind": tier.kind,
        "name": name,
        "uid": tier.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    await runtime.kube.save_revision(
        ns,
        f"{name}-{rev}",
        {LABEL_TIER: name, LABEL_REVISION: rev},
        owner,
        {"template": raw_spec["template"]},
        number,
    )
    runtime.templates[(ns, name, rev)] = dict(raw_spec["template"])
    keep = {f"{name}-{rev}"}
    for old, _ in sorted(existing, key=lambda item: -item[1])[REVISION_HISTORY - 1 :]:
        if old not in keep:
            await runtime.kube.delete_revision(ns, old)


@dataclass(frozen=True)
class Outcome:
    """What one reconcile did, for the handler to report."""

    decision: Decision
    wrote_status: bool
    events: tuple[EventNote, ...] = ()


async def reconcile(
    runtime: Runtime,
    body: Mapping[str, Any],
    peers: tuple[Peer, ...],
    deployment: DeploymentView,
    now: datetime | None = None,
    canary: DeploymentView | None = None,
) -> Outcome:
    """Reconcile one SenderTier once (``canary``: its canary Deployment, when one exists)."""
    started = asyncio.get_running_loop().time()
    now = now or datetime.now(UTC)
    try:
        tier = SenderTier.model_validate(dict(body))
    except ValidationError as exc:
        return await _invalid(runtime, body, _problem(exc), now)
    raw_spec = body["spec"]
    rev = revision_of(raw_spec["template"])
    meta = tier.metadata
    ctx = Context(
        tier=tier,
        spec_revision=rev,
        now=now,
        peers=peers,
        deployment=deployment,
        requests=requests_from(meta.annotations),
        canary_deployment=canary or DeploymentView(),
    )
    if evaluation_due(ctx):
        observations = await evaluate(ctx, runtime, meta.namespace)
        ctx = replace(ctx, observations=observations)
        result = chk.verdict(observations)
        metrics.EVALUATIONS.labels(meta.namespace, tier.spec.fleet, result.value).inc()
    decision = decide(ctx)
    if decision.save_signed_off:
        await save_signed_off(runtime, tier, raw_spec, rev)
    decision = await _replay(runtime, tier, decision, now)
    template, missing = await target(runtime, tier, raw_spec, decision.deployment)
    decision = rollback_target(decision, missing, meta.generation, now)
    if runtime.notifier is not None:
        status = notes.recorded(tier.status, decision.status, meta.uid, now)
        decision = replace(decision, status=status)
    new_status = _dump(decision.status)
    wrote = new_status != _dump(tier.status)
    if wrote:
        await runtime.kube.replace_status(meta.namespace, meta.name, meta.resource_version, new_status)
    await converge_canary(runtime, tier, raw_spec, decision.canary, ctx.canary_deployment)
    if runtime.notifier is not None:
        runtime.notifier.offer(meta.namespace, meta.name, decision.status.notifications)
    await converge(runtime, tier, decision.deployment, deployment, template)
    _record(tier, decision, now)
    metrics.RECONCILE_SECONDS.observe(asyncio.get_running_loop().time() - started)
    metrics.LAST_RECONCILE.set_to_current_time()
    return Outcome(decision, wrote, decision.events if wrote else ())


def _problem(exc: ValidationError) -> str:
    """The first few validation errors of a spec, as one line naming the fields."""
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]]
    return "; ".join(parts)


async def _invalid(runtime: Runtime, body: Mapping[str, Any], problem: str, now: datetime) -> Outcome:
    """Record a spec the operator cannot use as an ``InvalidSpec`` condition; touch nothing else."""
    meta = body.get("metadata", {})
    try:
        status = SenderTierStatus.model_validate(body.get("status") or {})
    except ValidationError:
        status = SenderTierStatus()
    new = invalid_spec(status, problem, int(meta.get("generation", 0) or 0), now)
    wrote = _dump(new) != _dump(status)
    if wrote:
        await runtime.kube.replace_status(
            meta.get("namespace", "default"), meta["name"], meta.get("resourceVersion", ""), _dump(new)
        )
    log.warning("Invalid spec sendertier=%s/%s problem=%r", meta.get("namespace"), meta.get("name"), problem)
    note = EventNote(Reason.INVALID_SPEC, new.message or problem, warning=True)
    decision = Decision(
        status=new, deployment=DeploymentIntent(Source.NONE, None, 0), requeue_after=IDLE_SECONDS
    )
    return Outcome(decision, wrote, (note,) if wrote else ())


async def _replay(runtime: Runtime, tier: SenderTier, decision: Decision, now: datetime) -> Decision:
    """Start or follow the automatic replay of a rolled-back revision's discards."""
    if runtime.replay is None or (decision.replay is None and decision.refresh_replay is None):
        return decision
    status = decision.status
    try:
        if decision.replay is not None:
            request = decision.replay
            halt = {
                "revision": request.revision,
                "windowStart": request.window_start.isoformat(),
                "at": now.isoformat(),
                "check": "-",
            }
            job = await runtime.replay.create_job(
                halt_filter(request.tier, halt, now=request.until),
                source=f"sendertier/{tier.metadata.namespace}/{tier.metadata.name}",
            )
            note = EventNote(
                Reason.REPLAY_STARTED,
                f"Replaying what revision {request.revision} discarded since "
                f"{request.window_start.isoformat()} (job {job['id']})",
            )
            record = ReplayJobStatus(
                id=str(job["id"]),
                state=str(job.get("state", "pending")),
                revision=request.revision,
                createdAt=now,
            )
            return replace(
                decision,
                status=status.with_replay_job(record),
                events=(*decision.events, note),
            )
        assert decision.refresh_replay is not None
        assert status.replay_job is not None
        job = await runtime.replay.get_job(decision.refresh_replay)
    except (ReplayApiError, httpx.HTTPError, TransientError) as exc:
        # The replay service is away or refused: status records no job, so the next tick asks again.
        log.warning(
            "Replay service call failed sendertier=%s/%s error=%r",
            tier.metadata.namespace,
            tier.metadata.name,
            exc,
        )
        return decision
    counters = job.get("counters") or job
    record = status.replay_job.model_copy(
        update={
            "state": str(job.get("state", status.replay_job.state)),
            "replayed": counters.get("replayed"),
            "skipped": counters.get("skipped"),
        }
    )
    return replace(decision, status=status.with_replay_job(record))


def _record(tier: SenderTier, decision: Decision, now: datetime) -> None:
    ns, fleet = tier.metadata.namespace, tier.spec.fleet
    old, new = tier.status.phase, decision.status.phase
    metrics.set_phase(ns, fleet, tier.metadata.name, new)
    metrics.record_status(ns, fleet, tier.metadata.name, decision.status, old != new, now)
    # Present at 0 from the first reconcile, so increase() sees the first yield.
    yielded = metrics.ROLLOUTS_YIELDED.labels(ns, fleet)
    if any(note.reason is Reason.YIELDED for note in decision.events):
        yielded.inc()
    if old == new:
        return
    if new is Phase.PROGRESSING and old is not Phase.PROGRESSING:
        metrics.ROLLOUTS_STARTED.labels(ns, fleet).inc()
    if new is Phase.SIGNED_OFF and decision.save_signed_off:
        metrics.ROLLOUTS_SIGNED_OFF.labels(ns, fleet).inc()
    halt = decision.status.halt
    if new in HALTED_PHASES and halt is not None:
        metrics.ROLLOUTS_HALTED.labels(ns, fleet, halt.check).inc()
        metrics.TIME_TO_DETECT.observe(max((now - halt.window_start).total_seconds(), 0.0))
