"""tiergate's exceptions, in one hierarchy.

    TiergateError
    ├── TransientError            retry later: the API server, Prometheus or a pod did not answer
    │   ├── ConflictError         our view of an object was stale; re-read and decide again
    │   └── PrometheusUnavailable Prometheus unreachable or erroring: checks are inconclusive
    └── PermanentError            retrying cannot help until someone changes something
        ├── InvalidSpecError      a SenderTier the schema let through but the operator cannot use
        └── RollbackTargetMissing the ControllerRevision of the signed-off template is gone

The controller maps TransientError to ``kopf.TemporaryError(delay=…)`` and PermanentError to
``kopf.PermanentError`` plus a condition.
"""

from __future__ import annotations


class TiergateError(Exception):
    """Base of every error tiergate raises on purpose."""


class TransientError(TiergateError):
    """Retrying later may succeed."""

    delay: float = 5.0


class ConflictError(TransientError):
    """An update was based on a stale object."""

    delay = 0.5


class PrometheusUnavailable(TransientError):
    """Prometheus could not answer a query."""


class PermanentError(TiergateError):
    """Retrying will not help until the object or the cluster changes."""


class InvalidSpecError(PermanentError):
    """The SenderTier's spec cannot be acted on."""


class RollbackTargetMissing(PermanentError):
    """The signed-off template to roll back to is not stored any more."""
