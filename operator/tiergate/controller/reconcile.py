"""One reconcile of one SenderTier: observe, ask the domain, write status, converge, tell people.

The order is the crash-safety argument: the status (the record of intent) is written first, guarded
by ``resourceVersion``; the Deployment is converged from that decision afterwards; Events last. An
operator killed between any two steps finds the intent in status and finishes the job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from tiergate.api.annotations import ANNOTATION_ABORT, ANNOTATION_PAUSED, ANNOTATION_PROMOTE, ANNOTATION_RETRY
from tiergate.api.durations import parse_duration
from tiergate.api.v1alpha1 import Phase, ReplayJobStatus, SenderTier, SenderTierStatus
from tiergate.clients.kube import Kube
from tiergate.clients.probe import probe_all
from tiergate.clients.prometheus import Prometheus
from tiergate.clients.replay import ReplayApiError, ReplayClient, halt_filter
from tiergate.controller import metrics
from tiergate.domain import checks as chk
from tiergate.domain.checks import Observation, Result
from tiergate.domain.reasons import Reason
from tiergate.domain.revision import revision_of
from tiergate.domain.rollout import (
    Context,
    Decision,
    DeploymentIntent,
    DeploymentView,
    EventNote,
    Peer,
    Requests,
    Source,
    decide,
    evaluation_due,
)
from tiergate.domain.workload import (
    ANNOTATION_APPLIED,
    LABEL_REVISION,
    LABEL_TIER,
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
    )


def peer_from(body: Mapping[str, Any]) -> Peer:
    """A fleet member as another tier sees it."""
    spec = body.get("spec", {})
    status = body.get("status", {}) or {}
    annotations = body.get("metadata", {}).get("annotations", {}) or {}
    phase = status.get("phase")
    return Peer(
        name=body["metadata"]["name"],
        order=int(spec.get("order", 0)),
        spec_revision=revision_of(spec.get("template", {})),
        signed_off_revision=status.get("signedOffRevision"),
        phase=Phase(phase) if isinstance(phase, str) and phase in Phase._value2member_map_ else None,
        paused=requests_from(annotations).paused,
    )


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
    """Run the whole health stack once: the implicit pods-ready check, then each configured check."""
    tier = ctx.tier
    rev = ctx.spec_revision
    name = tier.metadata.name
    wanted = tier.spec.replicas
    ready = ctx.deployment.ready if ctx.deployment.revision == rev else 0
    started = tier.status.rollout.started_at if tier.status.rollout else None
    elapsed = (ctx.now - started).total_seconds() if started else 0.0
    variables = {
        "tier": name,
        "revision": rev,
        "fleet": tier.spec.fleet,
        "namespace": namespace,
        "trafficClass": tier.spec.traffic_class,
    }
    baseline = [p.name for p in ctx.peers if p.name != name and p.spec_revision != p.signed_off_revision]

    async def value(promql: str) -> float | None:
        if runtime.prometheus is None:
            raise PrometheusUnavailable("no Prometheus configured (--prometheus-url)")
        return await runtime.prometheus.value(promql)

    async def one(check: Any) -> Observation:
        try:
            if check.prometheus is not None:
                spec = check.prometheus
                query = chk.fill(spec.query, variables)
                evidence = None
                if spec.min_evidence is not None:
                    evidence = await value(chk.fill(spec.min_evidence.query, variables))
                return chk.judge_threshold(check.name, spec, query, await value(query), evidence)
            if check.http is not None:
                spec_http = check.http
                pods = await runtime.kube.list_pods(namespace, f"{LABEL_TIER}={name},{LABEL_REVISION}={rev}")
                ips = [p.ip for p in pods if p.ip]
                results = await probe_all(
                    ips,
                    spec_http.port,
                    spec_http.path,
                    spec_http.scheme,
                    parse_duration(spec_http.timeout),
                )
                passed = sum(1 for _, ok, _ in results if ok)
                target = f"{spec_http.scheme} :{spec_http.port}{spec_http.path}"
                failing = [f"{ip}: {detail}" for ip, ok, detail in results if not ok]
                failing += [f"{p.name}: no pod IP" for p in pods if not p.ip]
                return chk.judge_http(check.name, spec_http.min_ratio, target, passed, len(pods), failing[:3])
            if check.compare is not None:
                plan = chk.compare_queries(check.compare, name, rev, baseline)
                new_ratio, attempts = await asyncio.gather(value(plan.value), value(plan.evidence or ""))
                base = await value(plan.baseline) if plan.baseline else None
                return chk.judge_compare(check.name, check.compare, plan, new_ratio, attempts, base)
            budget = check.discard_budget
            query = chk.discard_budget_query(name, rev, elapsed)
            return chk.judge_discards(check.name, budget, query, await value(query))
        except PrometheusUnavailable as exc:
            return Observation(check.name, Result.INCONCLUSIVE, error=str(exc))

    results = await asyncio.gather(*(one(c) for c in tier.spec.health_gate.checks))
    return (chk.judge_pods(ready, wanted), *results)


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
    raw_spec: Mapping[str, Any],
    intent: DeploymentIntent,
    current: DeploymentView,
) -> str | None:
    """Make the Deployment match the intent; return a problem sentence, or None."""
    ns, name = tier.metadata.namespace, tier.metadata.name
    if intent.source is Source.NONE:
        if current.exists and current.replicas != 0:
            await runtime.kube.scale_deployment(ns, name, 0)
        return None
    template = await _template_for(runtime, tier, raw_spec, intent)
    if template is None:
        return f"the signed-off revision {intent.revision} has no ControllerRevision to roll back to"
    assert intent.revision is not None
    manifest = deployment_manifest(tier, template, intent.revision, intent.replicas)
    if current.applied != manifest["metadata"]["annotations"][ANNOTATION_APPLIED]:
        await runtime.kube.apply_deployment(manifest)
        log.info(
            "Applied Deployment sendertier=%s/%s revision=%s replicas=%d",
            ns,
            name,
            intent.revision,
            intent.replicas,
        )
    return None


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
    problem: str | None = None


async def reconcile(
    runtime: Runtime,
    body: Mapping[str, Any],
    peers: tuple[Peer, ...],
    deployment: DeploymentView,
    now: datetime | None = None,
) -> Outcome:
    """Reconcile one SenderTier once."""
    started = asyncio.get_running_loop().time()
    now = now or datetime.now(UTC)
    tier = SenderTier.model_validate(dict(body))
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
    new_status = _dump(decision.status)
    wrote = new_status != _dump(tier.status)
    if wrote:
        await runtime.kube.replace_status(meta.namespace, meta.name, meta.resource_version, new_status)
    problem = await converge(runtime, tier, raw_spec, decision.deployment, deployment)
    _record(tier, decision, now)
    metrics.RECONCILE_SECONDS.observe(asyncio.get_running_loop().time() - started)
    metrics.LAST_RECONCILE.set_to_current_time()
    return Outcome(decision, wrote, decision.events if wrote else (), problem)


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
                status=status.model_copy(update={"replay_job": record}),
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
    return replace(decision, status=status.model_copy(update={"replay_job": record}))


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
    if new in (Phase.HALTED, Phase.ROLLED_BACK) and halt is not None:
        metrics.ROLLOUTS_HALTED.labels(ns, fleet, halt.check).inc()
        metrics.TIME_TO_DETECT.observe(max((now - halt.window_start).total_seconds(), 0.0))
