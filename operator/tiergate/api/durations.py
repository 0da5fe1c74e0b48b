"""Durations as the CRD spells them: Go's ``time.ParseDuration`` form, which CEL's ``duration()`` reads.

One pattern serves the schema and the parser, so what the API server accepts is exactly what the
operator can interpret.
"""

from __future__ import annotations

import re

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_WHOLE = re.compile(DURATION_PATTERN)


def parse_duration(text: str) -> float:
    """Return the seconds in a Go-style duration such as ``90s``, ``2m`` or ``1h30m``."""
    if not _WHOLE.match(text):
        raise ValueError(f"invalid duration {text!r}: use a number with ms, s, m or h, e.g. 90s")
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Render seconds the way ``kubectl`` users read them (``95s``, ``2m5s``)."""
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"
