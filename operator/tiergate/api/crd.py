"""The SenderTier CRD, generated from the pydantic models so that schema and models are one contract.

The JSON Schema pydantic emits is folded into a Kubernetes *structural* schema: references
inlined, optional fields unwrapped from ``anyOf [X, null]``, titles and ``additionalProperties:
false`` dropped (the API server prunes and, under strict field validation, refuses unknown fields).
"""

from __future__ import annotations

from typing import Any

from tiergate.api import v1alpha1

_DROP = {"title", "x-tiergate-duration"}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Fleet", "type": "string", "jsonPath": ".spec.fleet"},
    {"name": "Order", "type": "integer", "jsonPath": ".spec.order"},
    {"name": "Class", "type": "string", "jsonPath": ".spec.trafficClass", "priority": 1},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Canary", "type": "string", "jsonPath": ".status.canary.phase"},
    {"name": "Release", "type": "string", "jsonPath": ".status.release"},
    {"name": "Revision", "type": "string", "jsonPath": ".status.revision", "priority": 1},
    {"name": "Signed-Off", "type": "string", "jsonPath": ".status.signedOffRevision"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Fold one pydantic JSON Schema node into its structural-schema form."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        merged = dict(target)
        merged.update(node)  # a field's own description and default win over the model's
        node = merged
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o != {"type": "null"}]
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {len(options)} types structurally")
        inner = dict(options[0])
        inner.update(node)
        node = inner
        if "$ref" in node:
            return _structural(node, defs)
    if node.get("default", ...) is None:
        del node["default"]
    if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
        node.setdefault("type", "object")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "additionalProperties" and isinstance(value, bool)):
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    if out.get("format") == "date-time":
        out["type"] = "string"
    return out


def _schema_of(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    result: dict[str, Any] = _structural(raw, defs)
    return result


def openapi_schema() -> dict[str, Any]:
    """Return the openAPIV3Schema of SenderTier v1alpha1."""
    spec = _schema_of(v1alpha1.SenderTierSpec)
    status = _schema_of(v1alpha1.SenderTierStatus)
    return {
        "type": "object",
        "description": (
            "A SenderTier is one priority tier of SMS sender workers. Tiers of a fleet roll out "
            "in ascending order, each signed off on its health stack before the next moves."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "tiergate.io/v1alpha1"},
            "kind": {"type": "string", "description": "SenderTier"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def custom_resource_definition() -> dict[str, Any]:
    """Return the whole CustomResourceDefinition object for ``crds/sendertier.yaml``."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{v1alpha1.PLURAL}.{v1alpha1.GROUP}",
            "labels": {
                "app.kubernetes.io/name": "tiergate",
                "app.kubernetes.io/part-of": "tiergate",
            },
        },
        "spec": {
            "group": v1alpha1.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": v1alpha1.KIND,
                "listKind": f"{v1alpha1.KIND}List",
                "plural": v1alpha1.PLURAL,
                "singular": v1alpha1.SINGULAR,
                "shortNames": list(v1alpha1.SHORT_NAMES),
                "categories": ["tiergate"],
            },
            "versions": [
                {
                    "name": v1alpha1.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }
