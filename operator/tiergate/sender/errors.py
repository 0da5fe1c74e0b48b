"""Errors of the sender, drawn as one hierarchy so callers catch by meaning.

    SenderError
    ├── ConfigError            bad settings, or a fault switch given without the allow flag
    └── UpstreamError          a submit did not reach the SMSC / provider
        ├── TransientError     try again later (5xx, no answer in time)
        │   ├── ThrottledError the upstream asked us to slow down (ESME_RTHROTTLED, 429)
        │   └── UnavailableError the connector could not carry it (not bound, session lost)
        └── PermanentError     never retry (invalid destination, barred, 4xx)

Workers retry `TransientError` with backoff (an attempt is spent), lower the connector's rate on
`ThrottledError` and send the message to another connector on `UnavailableError` (neither spends
an attempt: the fault is downstream, not the message's), and discard at once on `PermanentError`.
"""

from __future__ import annotations


class SenderError(Exception):
    """Base of every error raised by `tiergate.sender`."""


class ConfigError(SenderError):
    """The process cannot start with the given settings."""


class UpstreamError(SenderError):
    """A submit to the upstream failed; `code` is the upstream's own status, if any."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class TransientError(UpstreamError):
    """The submit may succeed if tried again later."""


class ThrottledError(TransientError):
    """The upstream refused for rate; `retry_after` is its hint in seconds, or None."""

    def __init__(self, message: str, *, code: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class UnavailableError(TransientError):
    """The connector had no bound session to carry the submit; another connector may."""


class PermanentError(UpstreamError):
    """The upstream will never accept this message."""
