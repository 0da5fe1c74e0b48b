"""The drill's third contender: the same fleet as one Argo Rollout per tier, configured as its docs advise.

Each tier is a Rollout with the tiergate workers, replicas and deep readiness probe; the canary
takes one pod first, bakes, then an AnalysisRun asks Prometheus the same error-ratio question
tiergate's gate asks, with the same threshold, evidence floor, window and failure limit; a
canary that never becomes Ready is aborted at the progress deadline. The release is written to
all three Rollouts at once, as a GitOps sync would: Argo Rollouts has no notion of an order of
tiers. Each setting below names the Argo Rollouts documentation page it follows (see also
docs/drill/README.md, "The Argo Rollouts contender").

What Argo Rollouts does not do is done by a person, as in the baseline: roll back a Rollout
that was fully promoted (nothing judges it afterwards) and replay the discards (no replay).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kubernetes import client

from tiergate.api.v1alpha1 import SenderTier
from tiergate.domain.checks import SUBMITS
from tiergate.domain.revision import revision_of
from tiergate.domain.workload import LABEL_REVISION, LABEL_TIER, deployment_manifest
from tiergate_kits.drill.analysis import MARK_DETECTED, MARK_HALTED, MARK_HUMAN, MARK_ONSET, MARK_RECOVERED
from tiergate_kits.drill.stack import wait_until

if TYPE_CHECKING:
    from tiergate_kits.drill.scenario import Run, Sampler, Settings

log = logging.getLogger("tiergate_kits.drill.argo")

MODE = "argo-rollouts"
GROUP = "argoproj.io"
VERSION = "v1alpha1"
ROLLOUTS = "rollouts"
TEMPLATE = "error-rate"
# The same threshold and evidence floor as tiergate's error-rate check (scenario.fleet_docs).
MAX_ERROR_RATIO = 0.05
MIN_EVIDENCE = 10


def canary_weight(replicas: int) -> int:
    """The first step's weight: one pod of the tier (basic canary scales ReplicaSets by weight)."""
    return max(1, min(50, 100 // max(replicas, 1)))


def analysis_template(settings: Settings, prometheus_url: str) -> dict[str, Any]:
    """The AnalysisTemplate: tiergate's error-ratio query with its threshold, window and limits.

    Prometheus provider (argo-rollouts docs, analysis/prometheus): the query returns a vector, so
    the condition reads ``result[0]``. The ratio is only returned once the window holds
    ``MIN_EVIDENCE`` submits, tiergate's minEvidence; with less, the measurement fails rather
    than passing on no data. ``failureLimit`` is tiergate's failureLimit (features/analysis:
    the run fails once more measurements failed than the limit), ``count`` x ``interval`` is
    tiergate's bake again, so the analysis judges as long as tiergate's bake does.
    """
    window = f"{settings.error_window}s"
    sel = 'tier="{{args.tier}}",revision="{{args.revision}}"'
    ratio = (
        f'(sum(rate({SUBMITS}{{{sel},result="error"}}[{window}])) or vector(0)) / '
        f"sum(rate({SUBMITS}{{{sel}}}[{window}]))"
    )
    query = f"({ratio}) and on() (sum(increase({SUBMITS}{{{sel}}}[{window}])) >= {MIN_EVIDENCE})"
    count = max(settings.failure_limit + 1, settings.bake // max(settings.interval, 1))
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AnalysisTemplate",
        "metadata": {"name": TEMPLATE},
        "spec": {
            "args": [{"name": "tier"}, {"name": "revision"}],
            "metrics": [
                {
                    "name": TEMPLATE,
                    "interval": f"{settings.interval}s",
                    "count": count,
                    "failureLimit": settings.failure_limit,
                    "successCondition": f"len(result) > 0 && result[0] <= {MAX_ERROR_RATIO}",
                    "provider": {"prometheus": {"address": prometheus_url, "query": query}},
                }
            ],
        },
    }


def rollout(
    doc: Mapping[str, Any], namespace: str, template: Mapping[str, Any], settings: Settings
) -> dict[str, Any]:
    """One tier as a Rollout: tiergate's pod template (deep /readyz probe), canary steps, abort."""
    tier = SenderTier.model_validate({**doc, "metadata": {**doc["metadata"], "namespace": namespace}})
    revision = revision_of(template)
    dep = deployment_manifest(tier, template, revision, tier.spec.replicas)
    spec = dep["spec"]
    spec.pop("strategy")
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": tier.metadata.name, "labels": dep["metadata"]["labels"]},
        "spec": {
            **spec,
            # features/specification: a canary that makes no progress in this time is aborted
            # (progressDeadlineAbort), which scales the canary down and leaves the stable serving.
            "progressDeadlineSeconds": settings.progress_deadline,
            "progressDeadlineAbort": True,
            # features/rollback: a rollback to the last revision skips the steps and the analysis.
            "rollbackWindow": {"revisions": 1},
            "strategy": {
                "canary": {
                    # features/canary: with no traffic router the weight is a share of pods; the
                    # workers pull from the queue, so a pod's share of pods is its share of traffic.
                    # maxUnavailable 0 as tiergate's Deployments: no old pod goes before a new is Ready.
                    "maxSurge": "25%",
                    "maxUnavailable": 0,
                    "steps": [
                        {"setWeight": canary_weight(tier.spec.replicas)},
                        {"pause": {"duration": f"{settings.bake}s"}},
                        {
                            # features/analysis, "Analysis as a step": a failed run aborts the update.
                            "analysis": {
                                "templates": [{"templateName": TEMPLATE}],
                                "args": [
                                    {"name": "tier", "value": tier.metadata.name},
                                    {"name": "revision", "value": revision},
                                ],
                            }
                        },
                    ],
                }
            },
        },
    }


def sync_patch(
    doc: Mapping[str, Any], namespace: str, template: Mapping[str, Any], settings: Settings
) -> dict[str, Any]:
    """What a GitOps sync of the tier's file writes: the whole spec, not the pod template alone.

    The analysis step's ``revision`` argument is in the same file as the template it names, so
    the two change together; a patch of the template alone would leave the analysis asking
    about the release before (the stable pods, healthy), and every bad canary would pass.
    """
    return {"spec": rollout(doc, namespace, template, settings)["spec"]}


def pod_workloads(pods: Iterable[Any], replicas: int) -> dict[str, tuple[str | None, int, int]]:
    """Per tier, as the Sampler records a Deployment: the revision it rolls to, replicas, Ready pods of it.

    A Rollout's status names ReplicaSet hashes, not tiergate revisions; the pods say both. The
    revision a tier rolls to is that of its newest pod (a canary's, during an update), as a
    Deployment's template would say.
    """
    newest: dict[str, tuple[Any, str]] = {}
    ready: dict[tuple[str, str], int] = {}
    for pod in pods:
        labels = pod.metadata.labels or {}
        if LABEL_TIER not in labels:
            continue
        tier, revision = labels[LABEL_TIER], labels.get(LABEL_REVISION, "")
        created = pod.metadata.creation_timestamp
        if tier not in newest or (created is not None and created > newest[tier][0]):
            newest[tier] = (created, revision)
        conditions = pod.status.conditions or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            ready[(tier, revision)] = ready.get((tier, revision), 0) + 1
    return {tier: (rev, replicas, ready.get((tier, rev), 0)) for tier, (_, rev) in newest.items()}


def serving(api: client.ApiClient, namespace: str, revisions: Mapping[str, str], replicas: int) -> bool:
    """Every tier's pods all hold its revision, with ``replicas`` of them Ready."""
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    held: dict[str, set[str]] = {}
    for pod in pods:
        labels = pod.metadata.labels or {}
        if LABEL_TIER in labels:
            held.setdefault(labels[LABEL_TIER], set()).add(labels.get(LABEL_REVISION, ""))
    counts = pod_workloads(pods, replicas)
    return all(held.get(tier) == {rev} and counts[tier][2] >= replicas for tier, rev in revisions.items())


class ArgoFleet:
    """The three Rollouts of one drill run, and the reads the drill makes of them."""

    def __init__(
        self, api: client.ApiClient, namespace: str, settings: Settings, prometheus_url: str
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.api = api
        self.namespace = namespace
        self.settings = settings
        self.prometheus_url = prometheus_url
        self.stable_before: dict[str, str] = {}

    def deploy(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """Create the AnalysisTemplate and one Rollout per tier on its good release."""
        self.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "analysistemplates",
            analysis_template(self.settings, self.prometheus_url),
        )
        for doc in docs:
            body = rollout(doc, self.namespace, doc["spec"]["template"], self.settings)
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, ROLLOUTS, body)

    def apply(self, docs: Iterable[Mapping[str, Any]], templates: Mapping[str, Mapping[str, Any]]) -> None:
        """Write each named tier's template into its Rollout (a GitOps sync of every changed file)."""
        for doc in docs:
            name = doc["metadata"]["name"]
            if name not in templates:
                continue
            body = sync_patch(doc, self.namespace, templates[name], self.settings)
            self.stable_before[name] = str(self.status(name).get("stableRS") or "")
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, ROLLOUTS, name, body)

    def status(self, name: str) -> dict[str, Any]:
        """A Rollout's status."""
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, ROLLOUTS, name)
        return dict(obj.get("status") or {})

    def outcome(self, name: str) -> str | None:
        """``aborted``, ``promoted`` (the update finished: its stable is the new release) or None yet."""
        status = self.status(name)
        if status.get("abort"):
            return "aborted"
        current = status.get("currentPodHash")
        stable = status.get("stableRS")
        moved = stable != self.stable_before.get(name)
        if current and moved and stable == current and status.get("phase") == "Healthy":
            return "promoted"
        return None


def respond(run: Run, sampler: Sampler, fleet: ArgoFleet) -> None:
    """Watch each Rollout abort or finish; then a person does what Argo Rollouts does not.

    A tier whose canary was aborted serves its stable release again with nobody acting. A tier
    whose update finished holds the bad release; a person notices ``detection_delay`` after the
    failure begins and writes the good release back (a Git revert, fast-tracked by the rollback
    window). Discards are replayed by hand: Argo Rollouts has no replay.
    """
    from tiergate_kits.drill.scenario import fail_after

    settings = run.settings
    late = fail_after(run.scenario, settings)
    outcomes: dict[str, tuple[str, float]] = {}

    def settled() -> bool:
        for tier in run.bad:
            if tier not in outcomes and (found := fleet.outcome(tier)):
                outcomes[tier] = (found, time.time())
        return len(outcomes) == len(run.bad)

    wait_until(settled, 300 + late + settings.progress_deadline, "every Rollout aborted or promoted", 0.5)
    aborted = sorted((at, tier) for tier, (what, at) in outcomes.items() if what == "aborted")
    if aborted:
        at, tier = aborted[0]
        message = str(fleet.status(tier).get("message") or "aborted")
        run.mark(MARK_DETECTED, f"Argo Rollouts aborts {tier}: {message[:120]}", at)
        run.mark(MARK_HALTED, f"{len(aborted)} Rollout(s) aborted", at)
    promoted = sorted(tier for tier, (what, _) in outcomes.items() if what == "promoted")
    if promoted:
        start = wait_until(lambda: sampler.first_start(run.bad), 120, "bad workers started", 0.5)
        onset = start + late
        if late:
            run.mark(MARK_ONSET, "failure begins", onset)
        time.sleep(max(0.0, onset + settings.detection_delay - time.time()))
        if not aborted:
            run.mark(MARK_DETECTED, f"person notices ({settings.detection_delay:g} s stated delay)")
            run.mark(MARK_HALTED, "rollback by hand")
        run.mark(MARK_HUMAN, f"manual rollback of the promoted Rollouts ({', '.join(promoted)})")
        fleet.apply(
            run.docs, {t: d["spec"]["template"] for d in run.docs if (t := d["metadata"]["name"]) in promoted}
        )
    wait_until(
        lambda: serving(run.api, run.namespace, run.good, settings.replicas),
        300,
        "every Rollout back on the good release",
        0.5,
    )
    run.mark(MARK_RECOVERED, "every tier back on the good release")
    log.info(
        "Drill Argo outcomes namespace=%s outcomes=%s",
        run.namespace,
        {t: o for t, (o, _) in outcomes.items()},
    )
