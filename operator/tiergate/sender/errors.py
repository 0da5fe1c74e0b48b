"""The errors the sender raises, as the sender's modules name them (one tree: `tiergate.errors`).

An upstream failure is a `TransientError` (try again later: connection lost, 5xx, timeout),
a `ThrottledError` (the upstream asked us to slow down) or a `PermanentError` (never retry:
invalid destination, barred, 4xx); `code` carries the upstream's own status. Workers retry a
`TransientError` with backoff (an attempt is spent), lower the connector's rate on `ThrottledError`
and send the message to another connector on `UnavailableError` (neither spends an attempt: the
fault is downstream, not the message's), and discard at once on `PermanentError`.
"""

from __future__ import annotations

from typing import TypeAlias

from tiergate.errors import ConfigError, PermanentError, ThrottledError, TransientError, UnavailableError

UpstreamError: TypeAlias = TransientError | PermanentError

__all__ = [
    "ConfigError",
    "PermanentError",
    "ThrottledError",
    "TransientError",
    "UnavailableError",
    "UpstreamError",
]
