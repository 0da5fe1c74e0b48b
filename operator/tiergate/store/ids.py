"""Sortable unique ids for messages, discards and replay jobs.

An id is 26 Crockford base32 characters: 48 bits of milliseconds since the epoch, then
80 random bits, so ids sort by creation time as text in both engines (the alphabet is in
ascending ASCII order). Encoding goes ten bits at a time through a table: ids are made on
the ingest hot path.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))


def new_id(now: float | None = None) -> str:
    """A new time-sortable unique id."""
    ms = int((time.time() if now is None else now) * 1000) & 0xFFFF_FFFF_FFFF
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])
