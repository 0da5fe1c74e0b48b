"""One evaluation of a tier's health stack, as data: what each check needs fetched, and its verdict.

The controller only fetches (PromQL values, pod probes); which queries a check needs, which pods it
probes and how the answers are judged live here, each check matched by its :class:`Kind` so a new
kind that is not handled fails type-checking. "Ready pods of this revision" has one definition,
:meth:`DeploymentView.new_ready`, shared with the rollout's own progress.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import assert_never

from tiergate.api.durations import parse_duration
from tiergate.api.v1alpha1 import Check
from tiergate.domain import checks as chk
from tiergate.domain.checks import Observation
from tiergate.domain.workload import LABEL_REVISION, LABEL_TIER


class Kind(enum.StrEnum):
    """The four kinds of check; exactly one is set on a :class:`Check`."""

    PROMETHEUS = "prometheus"
    HTTP = "http"
    COMPARE = "compare"
    DISCARD_BUDGET = "discardBudget"


def kind_of(check: Check) -> Kind:
    """Which kind a check is (the schema lets exactly one be set)."""
    if check.prometheus is not None:
        return Kind.PROMETHEUS
    if check.http is not None:
        return Kind.HTTP
    if check.compare is not None:
        return Kind.COMPARE
    return Kind.DISCARD_BUDGET


@dataclass(frozen=True)
class CheckEnv:
    """What a check's queries may name: the tier, its revision and where it runs."""

    tier: str
    revision: str
    fleet: str
    namespace: str
    traffic_class: str
    elapsed_seconds: float = 0.0
    baseline_tiers: tuple[str, ...] = ()

    def variables(self) -> dict[str, str]:
        """The ``{name}`` placeholders of a query and their values."""
        return {
            "tier": self.tier,
            "revision": self.revision,
            "fleet": self.fleet,
            "namespace": self.namespace,
            "trafficClass": self.traffic_class,
        }


@dataclass(frozen=True)
class Queries:
    """PromQL values to fetch, in order."""

    queries: tuple[str, ...]


@dataclass(frozen=True)
class PodProbe:
    """An HTTP GET of every pod that matches ``selector``."""

    selector: str
    port: int
    path: str
    scheme: str
    timeout_seconds: float

    @property
    def target(self) -> str:
        """The probe's human name, for status."""
        return f"{self.scheme} :{self.port}{self.path}"


Need = Queries | PodProbe


@dataclass(frozen=True)
class Probed:
    """What a pod probe found: pods that answered 2xx, pods probed, and a few failures."""

    passed: int
    total: int
    failing: tuple[str, ...] = ()


Fetched = Sequence[float | None] | Probed


def need(check: Check, env: CheckEnv) -> Need:
    """What the controller must fetch to judge ``check``."""
    kind = kind_of(check)
    match kind:
        case Kind.PROMETHEUS:
            spec = check.prometheus
            assert spec is not None
            queries = [chk.fill(spec.query, env.variables())]
            if spec.min_evidence is not None:
                queries.append(chk.fill(spec.min_evidence.query, env.variables()))
            return Queries(tuple(queries))
        case Kind.HTTP:
            probe = check.http
            assert probe is not None
            return PodProbe(
                f"{LABEL_TIER}={env.tier},{LABEL_REVISION}={env.revision}",
                probe.port,
                probe.path,
                probe.scheme,
                parse_duration(probe.timeout),
            )
        case Kind.COMPARE:
            assert check.compare is not None
            plan = chk.compare_queries(check.compare, env.tier, env.revision, env.baseline_tiers)
            extra = (plan.baseline,) if plan.baseline else ()
            return Queries((plan.value, plan.evidence or "", *extra))
        case Kind.DISCARD_BUDGET:
            return Queries((chk.discard_budget_query(env.tier, env.revision, env.elapsed_seconds),))
        case _:
            assert_never(kind)


def judge(check: Check, env: CheckEnv, fetched: Fetched) -> Observation:
    """The verdict of ``check`` on what the controller fetched for :func:`need`."""
    wanted = need(check, env)
    kind = kind_of(check)
    match kind:
        case Kind.PROMETHEUS:
            assert check.prometheus is not None
            assert isinstance(wanted, Queries)
            values = _values(fetched)
            evidence = values[1] if len(values) > 1 else None
            return chk.judge_threshold(check.name, check.prometheus, wanted.queries[0], values[0], evidence)
        case Kind.HTTP:
            assert check.http is not None
            assert isinstance(wanted, PodProbe)
            assert isinstance(fetched, Probed)
            return chk.judge_http(
                check.name,
                check.http.min_ratio,
                wanted.target,
                fetched.passed,
                fetched.total,
                fetched.failing,
            )
        case Kind.COMPARE:
            assert check.compare is not None
            plan = chk.compare_queries(check.compare, env.tier, env.revision, env.baseline_tiers)
            values = _values(fetched)
            base = values[2] if len(values) > 2 else None
            return chk.judge_compare(check.name, check.compare, plan, values[0], values[1], base)
        case Kind.DISCARD_BUDGET:
            assert check.discard_budget is not None
            assert isinstance(wanted, Queries)
            return chk.judge_discards(
                check.name, check.discard_budget, wanted.queries[0], _values(fetched)[0]
            )
        case _:
            assert_never(kind)


def _values(fetched: Fetched) -> Sequence[float | None]:
    if isinstance(fetched, Probed):
        raise TypeError("a Prometheus check was given a pod probe's result")
    return fetched
