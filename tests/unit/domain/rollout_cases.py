"""What the state machine's tests share: two templates, a fake clock, a Ready Deployment, a step."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tiergate.api.v1alpha1 import SenderTier
from tiergate.domain.revision import revision_of
from tiergate.domain.rollout import Context, Decision, DeploymentView, decide

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OLD = {"spec": {"containers": [{"name": "w", "image": "tiergate:1"}]}}
NEW = {"spec": {"containers": [{"name": "w", "image": "tiergate:2"}]}}
R_OLD, R_NEW = revision_of(OLD), revision_of(NEW)


def ready(rev: str) -> DeploymentView:
    """A Deployment of two pods, all of ``rev``, all Ready."""
    return DeploymentView(
        exists=True,
        revision=rev,
        replicas=2,
        total=2,
        updated=2,
        ready=2,
        available=2,
        generation=1,
        observed_generation=1,
    )


def ctx(t: SenderTier, now: datetime = T0, **kw: Any) -> Context:
    """A context for ``t`` at ``now``; its spec revision is its template's hash."""
    return Context(
        tier=t,
        spec_revision=revision_of(t.spec.template.model_dump(by_alias=True, exclude_unset=True)),
        now=now,
        **kw,
    )


def step(c: Context, **kw: Any) -> tuple[Context, Decision]:
    """Decide, then feed the decided status back as the next context's status."""
    d = decide(replace(c, **kw))
    return c.with_status(d.status), d
