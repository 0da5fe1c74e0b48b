"""Kopf handlers: thin wiring from watch streams to :mod:`tiergate.controller.reconcile`.

Two indices mirror the API server (tiers by fleet, tiergate's Deployments by tier) so a reconcile
reads no object it already watches; one daemon per SenderTier runs the level-based reconcile, woken
early by changes to its fleet or its Deployment, and otherwise when the domain asks to be
re-checked. Nothing here holds rollout state: it is all in the objects' status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from tiergate.api.v1alpha1 import GROUP, PLURAL, VERSION
from tiergate.controller import metrics
from tiergate.controller.reconcile import Runtime, deployment_view, peer_from, reconcile
from tiergate.domain.rollout import DeploymentView, Peer
from tiergate.domain.workload import LABEL_CANARY, LABEL_MANAGED_BY, LABEL_TIER, MANAGED_BY, PREFIX
from tiergate.errors import ConflictError, PermanentError, TransientError

log = logging.getLogger("tiergate.controller")

IDLE_RECHECK = 30.0


def configure(settings: kopf.OperatorSettings) -> None:
    """Kopf settings: our own prefix for its annotations and finalizer, no peering or scanning."""
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.peering.standalone = True
    settings.scanning.disabled = True
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.background.cancellation_polling = 1.0


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Apply tiergate's Kopf settings."""
    configure(settings)


@kopf.index(GROUP, VERSION, PLURAL)
def fleet_index(
    namespace: str, spec: Mapping[str, Any], body: kopf.Body, **_: Any
) -> dict[tuple[str, str], Peer]:
    """Every tier, keyed by (namespace, fleet), as its peers see it."""
    return {(namespace, str(spec.get("fleet", ""))): peer_from(body)}


@kopf.index("apps", "v1", "deployments", labels={LABEL_MANAGED_BY: MANAGED_BY})
def deployment_index(
    namespace: str, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str, str], DeploymentView]:
    """tiergate's Deployments, keyed by (namespace, tier); a canary by (namespace, tier + "/canary")."""
    tier = labels.get(LABEL_TIER)
    if not tier:
        return {}
    return {(namespace, _canary_key(tier) if labels.get(LABEL_CANARY) else tier): deployment_view(body)}


def _canary_key(tier: str) -> str:
    """The index key of a tier's canary Deployment ("/" is in no object name)."""
    return f"{tier}/canary"


@kopf.on.event(GROUP, VERSION, PLURAL)
def tier_changed(
    namespace: str,
    spec: Mapping[str, Any],
    name: str,
    memo: kopf.Memo,
    fleet_index: kopf.Index[tuple[str, str], Peer],
    **_: Any,
) -> None:
    """Wake the tier and every other tier of its fleet: a peer's change may release them.

    The highest order wakes first: when a halt rolls several tiers back, priority traffic is
    restored first, and no tier waits for another.
    """
    runtime: Runtime = memo["runtime"]
    runtime.poke(namespace, name)
    peers: list[Peer] = list(fleet_index.get((namespace, str(spec.get("fleet", ""))), []))
    for peer in sorted(peers, key=lambda p: (-p.order, p.name)):
        runtime.poke(namespace, peer.name)


@kopf.on.event("apps", "v1", "deployments", labels={LABEL_MANAGED_BY: MANAGED_BY})
def deployment_changed(namespace: str, labels: Mapping[str, str], memo: kopf.Memo, **_: Any) -> None:
    """Wake the tier whose Deployment changed (pods became Ready, a rollout moved)."""
    tier = labels.get(LABEL_TIER)
    if tier:
        memo["runtime"].poke(namespace, tier)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def tier_loop(
    name: str,
    namespace: str,
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    fleet_index: kopf.Index[tuple[str, str], Peer],
    deployment_index: kopf.Index[tuple[str, str], DeploymentView],
    **_: Any,
) -> None:
    """The reconcile loop of one SenderTier, for as long as it exists."""
    runtime: Runtime = memo["runtime"]
    wake = runtime.wakeup(namespace, name)
    stale_version: str | None = None
    log.info("Watching SenderTier sendertier=%s/%s", namespace, name)
    while not stopped:
        delay = IDLE_RECHECK
        version = body.get("metadata", {}).get("resourceVersion")
        if stale_version is not None and version == stale_version:
            delay = 0.2  # our own status write has not come back through the watch yet
        else:
            stale_version = None
            delay, stale_version = await _once(runtime, body, namespace, name, fleet_index, deployment_index)
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=max(delay, 0.05))
    runtime.wakeups.pop((namespace, name), None)
    fleet = str(body.get("spec", {}).get("fleet", ""))
    metrics.forget(namespace, fleet, name)


async def _once(
    runtime: Runtime,
    body: kopf.Body,
    namespace: str,
    name: str,
    fleet_index: kopf.Index[tuple[str, str], Peer],
    deployment_index: kopf.Index[tuple[str, str], DeploymentView],
) -> tuple[float, str | None]:
    """One reconcile; returns the delay before the next and the version to wait past, if any."""
    if body.get("metadata", {}).get("deletionTimestamp"):
        return IDLE_RECHECK, None
    snapshot = dict(body)
    fleet = str(snapshot.get("spec", {}).get("fleet", ""))
    peers = tuple(fleet_index.get((namespace, fleet), []))
    views = list(deployment_index.get((namespace, name), []))
    view = views[0] if views else DeploymentView()
    canaries = list(deployment_index.get((namespace, _canary_key(name)), []))
    try:
        outcome = await reconcile(runtime, snapshot, peers, view, canary=canaries[0] if canaries else None)
    except ConflictError:
        return 0.5, None
    except TransientError as exc:
        log.warning("Reconcile failed, will retry sendertier=%s/%s error=%s", namespace, name, exc)
        return exc.delay, None
    except PermanentError as exc:
        kopf.warn(body, reason="InvalidSpec", message=str(exc))
        return IDLE_RECHECK, None
    for note in outcome.events:
        if note.warning:
            kopf.warn(body, reason=note.reason.value, message=note.message)
        else:
            kopf.info(body, reason=note.reason.value, message=note.message)
    if outcome.decision.status.phase != (snapshot.get("status") or {}).get("phase"):
        log.info(
            "Tier phase changed sendertier=%s/%s phase=%s message=%r",
            namespace,
            name,
            outcome.decision.status.phase,
            outcome.decision.status.message,
        )
    version = snapshot["metadata"].get("resourceVersion") if outcome.wrote_status else None
    return outcome.decision.requeue_after, version
