"""Bad values fail `helm template` and `helm lint` with values.schema.json's message naming the field."""

from __future__ import annotations

import json

import pytest
from tests.unit.chart.chart_helm import CHART, helm

CASES: list[tuple[str, list[str], list[str]]] = [
    ("negative api replicas", ["api.replicas=-1"], ["/api/replicas", "minimum"]),
    ("negative operator replicas", ["operator.replicas=-2"], ["/operator/replicas", "minimum"]),
    ("replicas not a number", ["replay.replicas=two"], ["/replay/replicas", "want integer"]),
    ("unknown store engine", ["store.engine=mysql"], ["/store/engine", "'sqlite', 'postgresql'"]),
    (
        "postgresql without its DSN Secret",
        ["store.engine=postgresql"],
        ["/store/postgresql/existingSecret", "minLength"],
    ),
    ("sqlite with two API replicas", ["api.replicas=2"], ["/api/replicas", "maximum"]),
    ("a Secret name Kubernetes refuses", ["api.auth.existingSecret=Bad_Name"], ["/api/auth/existingSecret"]),
    ("an empty Secret key", ["replay.auth.key="], ["/replay/auth/key"]),
    ("a port out of range", ["api.port=70000"], ["/api/port", "maximum"]),
    ("no API processes", ["api.processes=0"], ["/api/processes", "minimum"]),
    ("a negative customer rate", ["api.customerRate=-1"], ["/api/customerRate", "minimum"]),
    ("a negative queue depth", ["api.maxQueueDepth=-5"], ["/api/maxQueueDepth", "minimum"]),
    ("an uncapped replay", ["replay.maxRate=0"], ["/replay/maxRate"]),
    ("an unknown top-level value", ["replicas=3"], ["additional properties 'replicas' not allowed"]),
    ("an unknown component value", ["operator.replica=3"], ["/operator", "'replica' not allowed"]),
    ("an unknown sqlite volume", ["store.sqlite.volume=nfs"], ["/store/sqlite/volume"]),
    ("an unknown pull policy", ["image.pullPolicy=Sometimes"], ["/image/pullPolicy"]),
    (
        "privilege escalation",
        ["securityContext.allowPrivilegeEscalation=true"],
        ["/securityContext/allowPrivilegeEscalation", "false"],
    ),
    ("no resource requests", ["api.resources.requests=null"], ["/api/resources", "requests"]),
    ("a connector without its URL", ["upstream.connectors[0].name=a"], ["/upstream/connectors/0", "url"]),
    (
        "a connector password inline",
        [
            "upstream.connectors[0].name=a,upstream.connectors[0].url=smpp://h:1,upstream.connectors[0].password=x"
        ],
        ["/upstream/connectors/0", "'password' not allowed"],
    ),
]


def set_args(values: list[str]) -> list[str]:
    """`--set` arguments for each value."""
    return [arg for value in values for arg in ("--set", value)]


@pytest.mark.parametrize(("case", "values", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_values_fail_template_with_the_schema_message(
    case: str, values: list[str], expected: list[str]
) -> None:
    done = helm("template", "tiergate", str(CHART), *set_args(values))
    assert done.returncode != 0, f"{case}: rendered anyway"
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    for text in expected:
        assert text in done.stderr, f"{case}: {text!r} not in {done.stderr}"


@pytest.mark.parametrize(("case", "values", "expected"), CASES[:6], ids=[c[0] for c in CASES[:6]])
def test_bad_values_fail_lint_with_the_schema_message(
    case: str, values: list[str], expected: list[str]
) -> None:
    done = helm("lint", str(CHART), *set_args(values))
    assert done.returncode != 0, f"{case}: linted clean"
    for text in expected:
        assert text in done.stdout + done.stderr, case


def test_the_schema_is_draft_07_and_closed_at_the_top_and_main_objects() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    for key in ("operator", "api", "replay", "store", "rbac", "monitoring", "networkPolicy", "prometheus"):
        assert schema["properties"][key]["additionalProperties"] is False, key


def test_good_values_pass() -> None:
    done = helm(
        "template",
        "tiergate",
        str(CHART),
        *set_args(["store.engine=postgresql", "store.postgresql.existingSecret=db", "api.replicas=4"]),
    )
    assert done.returncode == 0, done.stderr


def test_the_chart_ships_the_services_overload_defaults() -> None:
    import yaml

    from tiergate.replay.settings import DEFAULT_MAX_RATE
    from tiergate.sender.settings import DEFAULT_CUSTOMER_RATE, DEFAULT_MAX_QUEUE_DEPTH

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["api"]["customerRate"] == DEFAULT_CUSTOMER_RATE
    assert values["api"]["maxQueueDepth"] == DEFAULT_MAX_QUEUE_DEPTH
    assert values["replay"]["maxRate"] == DEFAULT_MAX_RATE
