"""Run a sender process's main coroutine on uvloop when it is installed.

The worker and the ingest API spend much of their CPU in the event loop and its socket
transports (SMPP frames, HTTP requests); uvloop's are cheaper than the standard library's.
``TIERGATE_EVENT_LOOP`` picks the loop: ``auto`` (default: uvloop if importable), ``uvloop``
(required) or ``asyncio``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tiergate.sender.errors import ConfigError

T = TypeVar("T")


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory `choice` (or TIERGATE_EVENT_LOOP) names; None for asyncio's."""
    choice = (choice or os.environ.get("TIERGATE_EVENT_LOOP") or "auto").lower()
    if choice == "asyncio":
        return None
    if choice not in ("auto", "uvloop"):
        raise ConfigError(f"TIERGATE_EVENT_LOOP must be auto, uvloop or asyncio, not {choice!r}")
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("TIERGATE_EVENT_LOOP=uvloop but uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """Run `main` to completion on the chosen event loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
