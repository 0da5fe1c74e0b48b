"""The metric names the code exports, read from its own metric objects.

Alert rules and dashboard queries must name these exactly; tests compare against this set, so a
renamed metric fails them instead of leaving a silent, always-empty panel or alert.
"""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from tiergate.controller import metrics as operator_metrics
from tiergate.replay import metrics as replay_metrics
from tiergate.sender import metrics as sender_metrics

SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def families() -> dict[str, str]:
    """Every metric family of the sender, replay service and operator: name to type."""
    out: dict[str, str] = {}
    for module in (sender_metrics, replay_metrics, operator_metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                for family in value.describe():
                    out[family.name] = family.type
    return out


def sample_names() -> set[str]:
    """Every series name Prometheus can hold for those families."""
    names: set[str] = set()
    for name, kind in families().items():
        suffixes = SUFFIXES.get(kind, ("",))
        names |= {name + s for s in suffixes}
    return names


def one_per_family() -> set[str]:
    """One series name per family that is present as soon as the family has a sample."""
    first = {"counter": "_total", "histogram": "_bucket"}
    return {name + first.get(kind, "") for name, kind in families().items()}
