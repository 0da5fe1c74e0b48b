"""The CRD in crds/ is exactly what the pydantic models generate, and it is a sound structural schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tiergate.api.v1alpha1 import HealthGate, SenderTier, SenderTierSpec
from tiergate.cli import render_crd

ROOT = Path(__file__).resolve().parents[3]
CRD_PATH = ROOT / "crds" / "sendertier.yaml"


def _schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_crd_file_is_generated_from_the_models() -> None:
    assert CRD_PATH.read_text() == render_crd(), "crds/sendertier.yaml is stale: run `make crd`"


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        out.extend(_walk(sub, f"{path}.{name}"))
    if "items" in node:
        out.extend(_walk(node["items"], f"{path}[]"))
    if isinstance(node.get("additionalProperties"), dict):
        out.extend(_walk(node["additionalProperties"], f"{path}{{}}"))
    return out


def test_every_spec_and_status_field_has_a_description() -> None:
    missing = [
        p
        for p, node in _walk(_schema())
        if p.startswith((".spec", ".status")) and not p.endswith(("[]", "{}")) and not node.get("description")
    ]
    assert missing == []


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        assert "$ref" not in node and "anyOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert node.get("default", 0) is not None, path


def test_spec_fields_match_the_model() -> None:
    spec = _schema()["properties"]["spec"]
    aliases = {f.alias or n for n, f in SenderTierSpec.model_fields.items()}
    assert set(spec["properties"]) == aliases
    required = {f.alias or n for n, f in SenderTierSpec.model_fields.items() if f.is_required()}
    assert set(spec["required"]) == required


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "fleet").glob("sendertiers*.yaml")))
def test_examples_parse_as_models(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "SenderTier"]
    assert docs
    for doc in docs:
        tier = SenderTier.model_validate(doc)
        assert tier.spec.template.spec.containers


def test_printer_columns_name_what_on_call_reads() -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    names = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    for wanted in ("Fleet", "Order", "Phase", "Release", "Revision", "Signed-Off", "Age"):
        assert wanted in names


def test_a_health_gate_is_required_and_needs_a_check_unless_readiness_only() -> None:
    spec = _schema()["properties"]["spec"]
    assert "healthGate" in spec["required"] and "default" not in spec["properties"]["healthGate"]
    rules = [r["rule"] for r in spec["properties"]["healthGate"]["x-kubernetes-validations"]]
    assert any("readinessOnly" in r and "checks.size() >= 1" in r for r in rules)
    with pytest.raises(ValidationError, match="readinessOnly"):
        HealthGate.model_validate({"checks": []})
    assert HealthGate.model_validate({"checks": [], "readinessOnly": True}).readiness_only
