"""tiergate's exceptions, in one hierarchy.

    TiergateError                    base of every error tiergate raises on purpose
    ├── ConfigError                  a process cannot start with these settings
    ├── TransientError               retrying later may succeed (`delay`, upstream `code`)
    │   ├── ConflictError            our view of an object was stale; re-read and decide again
    │   ├── PrometheusUnavailable    Prometheus unreachable or erroring: checks are inconclusive
    │   ├── ThrottledError           the upstream asked us to slow down (`retry_after`)
    │   ├── UnavailableError         a connector could not carry the submit (not bound); another may
    │   └── clients.replay.ReplayUnavailable  the replay service did not answer (httpx, mapped)
    ├── PermanentError               retrying cannot help until someone changes something
    ├── store.StoreError             the durable store (its own tree: `tiergate.store.base`)
    ├── clients.replay.ReplayApiError the replay service refused or failed a request
    ├── clients.tiers.TierNotFound   no SenderTier of that name (also a LookupError)
    ├── domain.messages.ValidationFailed  a message failed validation, field by field
    ├── replay.filters.BadField      a replay request field with a value we refuse
    ├── replay.engine.RateAboveCap   a replay rate above the upstream's cap (also a ValueError)
    └── replay.engine.WrongState     a job action its state does not allow

Where each is turned into something a caller sees, once: the operator's reconcile loop
(`controller.handlers`) requeues at once on `ConflictError`, retries after `delay` on any
other `TransientError` and posts a Warning event on `PermanentError`; the sender's workers
retry a `TransientError` with backoff (harder on `ThrottledError`) and discard at once on a
`PermanentError`; the sender and replay CLIs turn a `ConfigError` into a message and exit status 2; the
HTTP services answer the request errors with a 4xx problem.
"""

from __future__ import annotations


class TiergateError(Exception):
    """Base of every error tiergate raises on purpose."""


class ConfigError(TiergateError):
    """The process cannot start with the given settings."""


class TransientError(TiergateError):
    """Retrying later may succeed; `code` is the upstream's own status, if any."""

    delay: float = 5.0

    def __init__(self, message: str = "", *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class ConflictError(TransientError):
    """An update was based on a stale object."""

    delay = 0.5


class PrometheusUnavailable(TransientError):
    """Prometheus could not answer a query."""


class ThrottledError(TransientError):
    """The upstream refused for rate; `retry_after` is its hint in seconds, or None."""

    def __init__(self, message: str, *, code: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class UnavailableError(TransientError):
    """The connector had no bound session to carry the submit; another connector may."""


class PermanentError(TiergateError):
    """Retrying will not help until the object, the message or the cluster changes."""

    def __init__(self, message: str = "", *, code: str = "") -> None:
        super().__init__(message)
        self.code = code
