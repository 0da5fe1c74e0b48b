"""The wire form of a discard filter, shared by query strings, job bodies and views.

`GET /v1/discards` takes the filter as query parameters and `POST /v1/replays` as a JSON
object; both go through `parse_filter`, so a field means the same thing in both places and a
bad value is refused with the field's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tiergate.api.durations import parse_duration
from tiergate.errors import TiergateError
from tiergate.store import DiscardFilter, DiscardGroup

LIST_FIELDS = {
    "customer": "customer_ids",
    "tier": "tiers",
    "revision": "revisions",
    "reason": "reasons",
    "traffic_class": "traffic_classes",
}
FILTER_FIELDS = frozenset({"from", "to", "replayed", *LIST_FIELDS})
MAX_VALUES = 1000


@dataclass(frozen=True)
class BadField(TiergateError):
    """A request field with a value we refuse; `field` names it for the 4xx answer."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def parse_time(field: str, value: object) -> datetime:
    """An RFC 3339 timestamp; a naive one is taken as UTC."""
    if not isinstance(value, str) or not value:
        raise BadField(field, "expected an RFC 3339 timestamp such as 2024-05-01T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise BadField(field, f"not an RFC 3339 timestamp: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_bool(field: str, value: object) -> bool:
    """A boolean from JSON or from a query string (true/false, 1/0, yes/no)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes"}:
            return True
        if lowered in {"false", "0", "no"}:
            return False
    raise BadField(field, f"expected true or false, got {value!r}")


def parse_seconds(field: str, value: object) -> float:
    """A positive duration: seconds as a number, or a Go-style string such as ``15m``."""
    if isinstance(value, bool):
        raise BadField(field, "expected seconds or a duration such as 15m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                raise BadField(field, str(exc)) from None
    else:
        raise BadField(field, "expected seconds or a duration such as 15m")
    if not seconds > 0 or seconds == float("inf"):
        raise BadField(field, "must be a positive duration")
    return seconds


def _values(field: str, raw: object) -> tuple[str, ...]:
    items: list[object]
    if isinstance(raw, str):
        items = list(raw.split(","))
    elif isinstance(raw, list | tuple):
        items = []
        for item in raw:
            items.extend(item.split(",") if isinstance(item, str) else [item])
    else:
        raise BadField(field, "expected a string or a list of strings")
    if not all(isinstance(item, str) for item in items):
        raise BadField(field, "expected a string or a list of strings")
    values = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    if len(values) > MAX_VALUES:
        raise BadField(field, f"at most {MAX_VALUES} values")
    return values


def parse_filter(data: Mapping[str, object], *, strict: bool = True) -> DiscardFilter:
    """A `DiscardFilter` from the wire form; unknown fields are refused when `strict`."""
    if strict:
        unknown = sorted(set(data) - FILTER_FIELDS)
        if unknown:
            raise BadField(unknown[0], f"unknown filter field; known: {', '.join(sorted(FILTER_FIELDS))}")
    kwargs: dict[str, Any] = {}
    if data.get("from") is not None:
        kwargs["since"] = parse_time("from", data["from"])
    if data.get("to") is not None:
        kwargs["until"] = parse_time("to", data["to"])
    if "since" in kwargs and "until" in kwargs and kwargs["since"] >= kwargs["until"]:
        raise BadField("to", "must be after from")
    for wire, attr in LIST_FIELDS.items():
        if data.get(wire) is not None:
            kwargs[attr] = _values(wire, data[wire])
    if data.get("replayed") is not None:
        kwargs["replayed"] = parse_bool("replayed", data["replayed"])
    return DiscardFilter(**kwargs)


def query_to_wire(params: Mapping[str, list[str]]) -> dict[str, object]:
    """The filter fields of a multi-valued query string, lists kept for the list fields."""
    wire: dict[str, object] = {}
    for name in FILTER_FIELDS:
        values = params.get(name)
        if not values:
            continue
        wire[name] = list(values) if name in LIST_FIELDS else values[-1]
    return wire


def filter_to_wire(f: DiscardFilter) -> dict[str, object]:
    """The wire form of a filter (only the constrained fields)."""
    wire: dict[str, object] = {}
    if f.since is not None:
        wire["from"] = f.since.astimezone(UTC).isoformat()
    if f.until is not None:
        wire["to"] = f.until.astimezone(UTC).isoformat()
    for name, attr in LIST_FIELDS.items():
        values = getattr(f, attr)
        if values:
            wire[name] = list(values)
    if f.replayed is not None:
        wire["replayed"] = f.replayed
    return wire


def parse_group(value: object) -> DiscardGroup:
    """A `group_by` value."""
    try:
        return DiscardGroup(str(value))
    except ValueError:
        known = ", ".join(g.value for g in DiscardGroup)
        raise BadField("group_by", f"expected one of {known}, got {value!r}") from None
