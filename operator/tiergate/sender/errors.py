"""The errors the sender raises, as the sender's modules name them (one tree: `tiergate.errors`).

An upstream failure is a `TransientError` (try again later: connection lost, 5xx, timeout),
a `ThrottledError` (the upstream asked us to slow down) or a `PermanentError` (never retry:
invalid destination, barred, 4xx); `code` carries the upstream's own status.
"""

from __future__ import annotations

from typing import TypeAlias

from tiergate.errors import ConfigError, PermanentError, ThrottledError, TransientError

UpstreamError: TypeAlias = TransientError | PermanentError

__all__ = ["ConfigError", "PermanentError", "ThrottledError", "TransientError", "UpstreamError"]
