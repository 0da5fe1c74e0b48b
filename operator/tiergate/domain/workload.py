"""The Deployment of a tier's sender workers, as a pure function of the tier and a template.

The operator owns these fields of the Deployment and nothing else; everything it sets is derived
here, so the manifest can be checked without a cluster and re-derived after a restart.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tiergate.api.durations import parse_duration
from tiergate.api.v1alpha1 import API_VERSION, GROUP, KIND, SenderTier

PREFIX = GROUP
LABEL_FLEET = f"{PREFIX}/fleet"
LABEL_TIER = f"{PREFIX}/tier"
LABEL_REVISION = f"{PREFIX}/revision"
LABEL_CLASS = f"{PREFIX}/traffic-class"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "tiergate"
ANNOTATION_APPLIED = f"{PREFIX}/applied-hash"

ENV_TIER = "TIERGATE_TIER"
ENV_FLEET = "TIERGATE_FLEET"
ENV_REVISION = "TIERGATE_REVISION"
ENV_CLASS = "TIERGATE_TRAFFIC_CLASS"


def selector(tier: SenderTier) -> dict[str, str]:
    """The Deployment's immutable pod selector: one tier."""
    return {LABEL_TIER: tier.metadata.name}


def _inject_env(container: dict[str, Any], env: Mapping[str, str]) -> None:
    existing = container.setdefault("env", [])
    names = {e.get("name") for e in existing}
    for name, value in env.items():
        if name not in names:
            existing.append({"name": name, "value": value})


def pod_template(tier: SenderTier, template: Mapping[str, Any], revision: str) -> dict[str, Any]:
    """The worker pod template with tiergate's labels and the tier's identity in each container's env."""
    out = copy.deepcopy(dict(template))
    meta = out.setdefault("metadata", {}) or {}
    out["metadata"] = meta
    labels = meta.setdefault("labels", {}) or {}
    meta["labels"] = labels
    labels.update(
        {
            LABEL_FLEET: tier.spec.fleet,
            LABEL_TIER: tier.metadata.name,
            LABEL_REVISION: revision,
            LABEL_CLASS: tier.spec.traffic_class,
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_COMPONENT: "sender-worker",
        }
    )
    env = {
        ENV_TIER: tier.metadata.name,
        ENV_FLEET: tier.spec.fleet,
        ENV_REVISION: revision,
        ENV_CLASS: tier.spec.traffic_class,
    }
    for container in out.get("spec", {}).get("containers", []):
        _inject_env(container, env)
    return out


def deployment_manifest(
    tier: SenderTier, template: Mapping[str, Any], revision: str, replicas: int
) -> dict[str, Any]:
    """The whole Deployment for a tier running ``revision`` of ``template`` with ``replicas`` pods."""
    deadline = int(parse_duration(tier.spec.health_gate.progress_deadline))
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": tier.metadata.name,
            "namespace": tier.metadata.namespace,
            "labels": {
                LABEL_FLEET: tier.spec.fleet,
                LABEL_TIER: tier.metadata.name,
                LABEL_REVISION: revision,
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_COMPONENT: "sender-worker",
            },
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": tier.metadata.name,
                    "uid": tier.metadata.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(tier)},
            "progressDeadlineSeconds": max(deadline, 1),
            "revisionHistoryLimit": 3,
            # New pods must be Ready before an old one goes: a revision that never becomes Ready
            # leaves the tier sending on its old pods until the gate rolls it back.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": pod_template(tier, template, revision),
        },
    }
    body["metadata"]["annotations"] = {ANNOTATION_APPLIED: applied_hash(body)}
    return body


def applied_hash(manifest: Mapping[str, Any]) -> str:
    """A hash of everything the operator sets, to notice drift and skip no-op writes."""
    material = {"labels": manifest["metadata"]["labels"], "spec": manifest["spec"]}
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


LABEL_CANARY = f"{PREFIX}/canary"
CANARY_SUFFIX = "-canary"


def canary_name(tier_name: str) -> str:
    """The name of a tier's canary Deployment."""
    return f"{tier_name}{CANARY_SUFFIX}"


def canary_manifest(
    tier: SenderTier, template: Mapping[str, Any], revision: str, replicas: int
) -> dict[str, Any]:
    """The canary Deployment beside the tier's own: the same pods, its own name and selector.

    Its pods keep the tier's labels (the fleet's Prometheus and the probes find them by tier and
    revision) and add ``tiergate.io/canary``, which its selector requires; the stable Deployment's
    ReplicaSets select by pod-template hash, so neither adopts the other's pods.
    """
    body = deployment_manifest(tier, template, revision, replicas)
    body["metadata"]["name"] = canary_name(tier.metadata.name)
    body["metadata"]["labels"][LABEL_CANARY] = "true"
    body["spec"]["selector"] = {"matchLabels": {**selector(tier), LABEL_CANARY: "true"}}
    body["spec"]["template"]["metadata"]["labels"][LABEL_CANARY] = "true"
    body["metadata"]["annotations"] = {ANNOTATION_APPLIED: applied_hash(body)}
    return body
