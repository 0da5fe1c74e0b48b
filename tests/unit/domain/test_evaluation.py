"""The health stack as data: what each kind of check needs fetched, and its verdict on the answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tiergate.api.v1alpha1 import Check, SenderTierStatus
from tiergate.domain import evaluation as ev
from tiergate.domain.checks import Result
from tiergate.domain.rollout import invalid_spec

ENV = ev.CheckEnv("bulk", "abc", "f", "ns", "bulk", elapsed_seconds=90, baseline_tiers=("standard",))


@pytest.mark.parametrize(
    ("check", "kind", "fetched", "result"),
    [
        ({"prometheus": {"query": 'x{tier="{tier}"}', "max": 1}}, ev.Kind.PROMETHEUS, [0.5], Result.PASS),
        ({"prometheus": {"query": "x", "max": 1}}, ev.Kind.PROMETHEUS, [2.0], Result.FAIL),
        (
            {"prometheus": {"query": "x", "max": 1, "minEvidence": {"query": "n", "min": 10}}},
            ev.Kind.PROMETHEUS,
            [0.5, 3.0],
            Result.INCONCLUSIVE,
        ),
        ({"http": {"port": 8080}}, ev.Kind.HTTP, ev.Probed(2, 2), Result.PASS),
        ({"http": {"port": 8080}}, ev.Kind.HTTP, ev.Probed(1, 2, ("10.0.0.1: 503",)), Result.FAIL),
        ({"compare": {"maxIncrease": 0.01}}, ev.Kind.COMPARE, [0.05, 100.0, 0.01], Result.FAIL),
        ({"compare": {"maxIncrease": 0.01}}, ev.Kind.COMPARE, [0.01, 100.0, 0.01], Result.PASS),
        ({"discardBudget": {"max": 5}}, ev.Kind.DISCARD_BUDGET, [6.0], Result.FAIL),
        ({"discardBudget": {"max": 5}}, ev.Kind.DISCARD_BUDGET, [None], Result.PASS),
    ],
)
def test_each_kind_needs_and_judges(
    check: dict[str, Any], kind: ev.Kind, fetched: Any, result: Result
) -> None:
    c = Check.model_validate({"name": "c", **check})
    assert ev.kind_of(c) is kind
    need = ev.need(c, ENV)
    if kind is ev.Kind.HTTP:
        assert isinstance(need, ev.PodProbe)
        assert need.selector == "tiergate.io/tier=bulk,tiergate.io/revision=abc"
    else:
        assert isinstance(need, ev.Queries) and all("{tier}" not in q for q in need.queries)
        assert len(need.queries) == len(fetched)
    assert ev.judge(c, ENV, fetched).result is result


def test_a_discard_budget_counts_since_the_rollout_started_and_compare_reads_the_baseline() -> None:
    budget = ev.need(Check.model_validate({"name": "d", "discardBudget": {"max": 1}}), ENV)
    assert isinstance(budget, ev.Queries) and "[91s]" in budget.queries[0]
    compare = ev.need(Check.model_validate({"name": "c", "compare": {}}), ENV)
    assert isinstance(compare, ev.Queries) and 'tier=~"standard"' in compare.queries[2]


def test_an_unusable_spec_is_a_condition_not_an_exception() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    old = SenderTierStatus.model_validate({"phase": "SignedOff", "revision": "r"})
    new = invalid_spec(old, "spec.healthGate: Field required", 4, now)
    assert new.phase is old.phase and new.observed_generation == 4
    invalid = next(c for c in new.conditions if c.type == "InvalidSpec")
    assert invalid.status == "True" and invalid.reason == "InvalidSpec"
    assert "healthGate" in invalid.message and "healthGate" in (new.message or "")
    assert next(c for c in new.conditions if c.type == "Stalled").status == "True"
