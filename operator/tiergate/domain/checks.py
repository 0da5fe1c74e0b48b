"""Judging the health stack: thresholds, query templates and the verdict of one evaluation.

Pure functions over numbers the clients fetched. No data is never a pass: an empty query result
is inconclusive unless the check says otherwise, and an inconclusive stack never signs a tier off.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tiergate.api.v1alpha1 import CompareCheck, DiscardBudgetCheck, OnNoData, PrometheusCheck
from tiergate.domain.series import DISCARDS_COUNTER, SUBMITS_COUNTER

# The sender's counters, as `sender.metrics` registers them; Prometheus exposes them with _total.
SUBMITS = f"{SUBMITS_COUNTER}_total"
DISCARDS = f"{DISCARDS_COUNTER}_total"
PODS_READY = "pods-ready"


class Result(enum.StrEnum):
    """The outcome of one check, or of the whole stack, in one evaluation."""

    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True)
class Observation:
    """What one check saw in one evaluation."""

    name: str
    result: Result
    value: float | None = None
    threshold: str | None = None
    query: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class QueryPlan:
    """The PromQL a check needs, with the placeholders already filled in."""

    value: str
    evidence: str | None = None
    baseline: str | None = None


def fill(template: str, variables: Mapping[str, str]) -> str:
    """Substitute ``{name}`` placeholders without touching PromQL's own braces."""
    out = template
    for key, value in variables.items():
        out = out.replace("{" + key + "}", value)
    return out


def _label_regex(names: Iterable[str]) -> str:
    return "|".join(sorted(names))


def compare_queries(
    check: CompareCheck, tier: str, revision: str, baseline_tiers: Sequence[str]
) -> QueryPlan:
    """PromQL for the new revision's error ratio, its attempts, and the old revision's ratio."""
    window = check.window
    new_sel = f'tier="{tier}",revision="{revision}"'
    value = (
        f'(sum(rate({SUBMITS}{{{new_sel},result="error"}}[{window}])) or vector(0)) / '
        f'sum(rate({SUBMITS}{{{new_sel},result=~"ok|error"}}[{window}]))'
    )
    evidence = f'sum(increase({SUBMITS}{{{new_sel},result=~"ok|error"}}[{window}]))'
    baseline = None
    if baseline_tiers:
        old_sel = f'tier=~"{_label_regex(baseline_tiers)}",revision!="{revision}"'
        baseline = (
            f'(sum(rate({SUBMITS}{{{old_sel},result="error"}}[{window}])) or vector(0)) / '
            f'sum(rate({SUBMITS}{{{old_sel},result=~"ok|error"}}[{window}]))'
        )
    return QueryPlan(value=value, evidence=evidence, baseline=baseline)


def discard_budget_query(tier: str, revision: str, elapsed_seconds: float) -> str:
    """PromQL counting the discards of this tier's new revision since its rollout started."""
    span = max(int(elapsed_seconds) + 1, 60)
    return f'sum(increase({DISCARDS}{{tier="{tier}",revision="{revision}"}}[{span}s]))'


def threshold_text(check: PrometheusCheck) -> str:
    """Human form of a check's bounds, e.g. ``<= 0.02`` or ``>= 5 and <= 9``."""
    parts = []
    if check.min is not None:
        parts.append(f">= {check.min:g}")
    if check.max is not None:
        parts.append(f"<= {check.max:g}")
    return " and ".join(parts)


def judge_threshold(
    name: str,
    check: PrometheusCheck,
    query: str,
    value: float | None,
    evidence: float | None = None,
) -> Observation:
    """Judge one Prometheus value against its bounds, the evidence guard and ``onNoData``."""
    bounds = threshold_text(check)
    if check.min_evidence is not None and (evidence is None or evidence < check.min_evidence.min):
        seen = "no data" if evidence is None else f"{evidence:g}"
        return Observation(
            name,
            Result.INCONCLUSIVE,
            value,
            bounds,
            query,
            f"not enough evidence yet: {seen} < {check.min_evidence.min:g}",
        )
    if value is None or value != value:  # NaN is what 0/0 gives in PromQL
        match check.on_no_data:
            case OnNoData.PASS:
                return Observation(name, Result.PASS, None, bounds, query, "no data (onNoData: Pass)")
            case OnNoData.FAIL:
                return Observation(name, Result.FAIL, None, bounds, query, "no data (onNoData: Fail)")
            case OnNoData.INCONCLUSIVE:
                return Observation(name, Result.INCONCLUSIVE, None, bounds, query, "no data")
    if check.max is not None and value > check.max:
        return Observation(name, Result.FAIL, value, bounds, query, f"{value:g} > {check.max:g}")
    if check.min is not None and value < check.min:
        return Observation(name, Result.FAIL, value, bounds, query, f"{value:g} < {check.min:g}")
    return Observation(name, Result.PASS, value, bounds, query)


def judge_compare(
    name: str,
    check: CompareCheck,
    plan: QueryPlan,
    new_ratio: float | None,
    attempts: float | None,
    baseline_ratio: float | None,
) -> Observation:
    """Judge the new revision's error ratio against the old revision's, live."""
    bound = f"<= baseline + {check.max_increase:g}"
    if attempts is None or attempts < check.min_attempts:
        seen = "no data" if attempts is None else f"{attempts:g}"
        return Observation(
            name,
            Result.INCONCLUSIVE,
            new_ratio,
            bound,
            plan.value,
            f"not enough attempts yet: {seen} < {check.min_attempts}",
        )
    if new_ratio is None or new_ratio != new_ratio:
        return Observation(name, Result.INCONCLUSIVE, None, bound, plan.value, "no data")
    base = 0.0 if baseline_ratio is None or baseline_ratio != baseline_ratio else baseline_ratio
    limit = base + check.max_increase
    text = f"<= {limit:g} (baseline {base:g} + {check.max_increase:g})"
    if new_ratio > limit:
        return Observation(
            name,
            Result.FAIL,
            new_ratio,
            text,
            plan.value,
            f"error ratio {new_ratio:g} > {limit:g}",
        )
    return Observation(name, Result.PASS, new_ratio, text, plan.value)


def judge_discards(name: str, check: DiscardBudgetCheck, query: str, value: float | None) -> Observation:
    """Judge the discards attributed to this rollout against its budget; none counted is zero."""
    count = 0.0 if value is None or value != value else value
    bound = f"<= {check.max}"
    if count > check.max:
        return Observation(name, Result.FAIL, count, bound, query, f"{count:g} discards > {check.max}")
    return Observation(name, Result.PASS, count, bound, query)


def judge_http(
    name: str,
    min_ratio: float,
    query: str,
    passed: int,
    total: int,
    failing: Sequence[str] = (),
) -> Observation:
    """Judge a deep probe of every pod: the share that answered 2xx against the required ratio."""
    bound = f">= {min_ratio:g} of pods"
    if total == 0:
        return Observation(name, Result.INCONCLUSIVE, None, bound, query, "no pods to probe")
    ratio = passed / total
    if ratio < min_ratio:
        detail = f" ({'; '.join(failing)})" if failing else ""
        return Observation(
            name, Result.FAIL, ratio, bound, query, f"{passed}/{total} pods answered 2xx{detail}"
        )
    return Observation(name, Result.PASS, ratio, bound, query)


def judge_pods(ready: int, wanted: int) -> Observation:
    """The implicit first check of every stack: the revision's pods stay Ready during the bake."""
    bound = f"{wanted} Ready"
    if ready < wanted:
        return Observation(PODS_READY, Result.FAIL, float(ready), bound, None, f"{ready}/{wanted} pods Ready")
    return Observation(PODS_READY, Result.PASS, float(ready), bound)


def verdict(observations: Sequence[Observation]) -> Result:
    """The stack's result: any failure fails it; else any inconclusive makes it inconclusive."""
    results = {o.result for o in observations}
    if Result.FAIL in results:
        return Result.FAIL
    if Result.INCONCLUSIVE in results:
        return Result.INCONCLUSIVE
    return Result.PASS
