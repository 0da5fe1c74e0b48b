"""Revision hashing and the Deployment a tier gets."""

from __future__ import annotations

from typing import Any

from tiergate.api.v1alpha1 import SenderTier
from tiergate.domain.revision import revision_of
from tiergate.domain.workload import (
    ANNOTATION_APPLIED,
    LABEL_REVISION,
    LABEL_TIER,
    deployment_manifest,
)


def _template(image: str = "tiergate:1") -> dict[str, Any]:
    return {
        "spec": {"containers": [{"name": "worker", "image": image, "env": [{"name": "A", "value": "1"}]}]}
    }


def _tier(template: dict[str, Any]) -> SenderTier:
    return SenderTier.model_validate(
        {
            "metadata": {"name": "bulk", "namespace": "ns", "uid": "u-1", "generation": 3},
            "spec": {
                "fleet": "f",
                "order": 0,
                "trafficClass": "bulk",
                "replicas": 2,
                "template": template,
                "healthGate": {"readinessOnly": True},
            },
        }
    )


def test_revision_ignores_key_order_and_changes_with_content() -> None:
    a = {"spec": {"containers": [{"name": "w", "image": "x"}]}, "metadata": {"labels": {"a": "1"}}}
    b = {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"image": "x", "name": "w"}]}}
    assert revision_of(a) == revision_of(b)
    assert len(revision_of(a)) == 10
    c = {"spec": {"containers": [{"name": "w", "image": "y"}]}, "metadata": {"labels": {"a": "1"}}}
    assert revision_of(c) != revision_of(a)


def test_deployment_carries_owner_labels_env_and_safe_strategy() -> None:
    template = _template()
    rev = revision_of(template)
    manifest = deployment_manifest(_tier(template), template, rev, 2)
    meta = manifest["metadata"]
    assert meta["ownerReferences"][0] == {
        "apiVersion": "tiergate.io/v1alpha1",
        "kind": "SenderTier",
        "name": "bulk",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    spec = manifest["spec"]
    assert spec["selector"] == {"matchLabels": {LABEL_TIER: "bulk"}}
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod_labels = spec["template"]["metadata"]["labels"]
    assert pod_labels[LABEL_REVISION] == rev and pod_labels[LABEL_TIER] == "bulk"
    env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["TIERGATE_REVISION"] == rev and env["TIERGATE_TIER"] == "bulk" and env["A"] == "1"
    assert env["TIERGATE_TRAFFIC_CLASS"] == "bulk"
    assert template["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}], "input mutated"


def test_applied_hash_follows_content() -> None:
    template = _template()
    rev = revision_of(template)
    one = deployment_manifest(_tier(template), template, rev, 2)
    same = deployment_manifest(_tier(template), template, rev, 2)
    more = deployment_manifest(_tier(template), template, rev, 3)
    key = ANNOTATION_APPLIED
    assert one["metadata"]["annotations"][key] == same["metadata"]["annotations"][key]
    assert one["metadata"]["annotations"][key] != more["metadata"]["annotations"][key]
