"""Run a sender process's main coroutine on uvloop when it is installed.

The worker and the ingest API spend much of their CPU in the event loop and its socket
transports (SMPP frames, HTTP requests); uvloop's are cheaper than the standard library's.
``TIERGATE_EVENT_LOOP`` picks the loop: ``auto`` (default: uvloop if importable), ``uvloop``
(required) or ``asyncio``.
"""

from __future__ import annotations

import asyncio
import gc
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


GC_YOUNG_THRESHOLD = 20_000


def tune_gc(env: dict[str, str] | None = None) -> int:
    """Collect cycles less often in a process that makes thousands of objects per request.

    A 1,000-message batch allocates tens of thousands of objects (parsed JSON, tuples,
    rows); at Python's default of 700 allocations per young collection, the collector ran
    dozens of times per request and cost 5-10 % of the ingest API's CPU. Almost nothing
    here forms reference cycles, so collecting every `GC_YOUNG_THRESHOLD` allocations
    frees the same memory; what exists after start-up (modules, metadata) is frozen out of
    the collector's scans. ``TIERGATE_GC_THRESHOLD`` overrides the number (0: Python's).
    Returns the threshold in effect.
    """
    raw = (os.environ if env is None else env).get("TIERGATE_GC_THRESHOLD", "")
    try:
        threshold = int(raw) if raw else GC_YOUNG_THRESHOLD
    except ValueError:
        raise ConfigError(f"TIERGATE_GC_THRESHOLD must be an integer, got {raw!r}") from None
    if threshold <= 0:
        return gc.get_threshold()[0]
    gc.freeze()
    gc.set_threshold(threshold, 10, 10)
    return threshold
