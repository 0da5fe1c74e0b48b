"""The fault switch: deliberate misbehaviour for drills and tests, off unless allowed.

A drill plays a bad release by setting ``TIERGATE_FAULTS`` on a tier's pods. Because the
same switch in production would be an outage, it is refused unless
``TIERGATE_ALLOW_FAULTS=1`` is also set.

Grammar: comma-separated items, each ``name`` or ``name=value``:

- ``no-bind``: start and serve ``/healthz`` but never bring up the sending service
  (the September 2020 incident);
- ``fail-submits=FRACTION``: fail that share of submits as transient upstream errors;
- ``slow-start=SECONDS``: wait that long before starting the sending service;
- ``fail-after=SECONDS``: the release works, then fails the way ``no-bind`` and/or
  ``fail-submits`` say once that long has passed since the worker started (a late
  failure: it passes a bake that is shorter than the delay). With ``no-bind`` the
  upstream is reported unbound from then on, so the worker stops leasing and ``/readyz``
  turns false, while ``/healthz`` stays alive;
- ``fail-class=CLASS``: every fault of the switch applies only to workers serving that
  traffic class; the others run clean. One release (one template for every tier) can so
  fail under the top tier's traffic alone.

``fail-after`` and ``fail-class`` qualify a fault: alone they are refused.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tiergate.sender.errors import ConfigError

ALLOW_ENV = "TIERGATE_ALLOW_FAULTS"
KNOWN = "no-bind, fail-submits=F, slow-start=S, fail-after=S, fail-class=CLASS"


@dataclass(frozen=True)
class Faults:
    """Which faults are switched on."""

    no_bind: bool = False
    fail_submits: float = 0.0
    slow_start: float = 0.0
    fail_after: float = 0.0
    fail_class: str = ""

    @property
    def any(self) -> bool:
        """Whether any fault is on."""
        return self.no_bind or self.fail_submits > 0 or self.slow_start > 0

    @property
    def no_bind_at_start(self) -> bool:
        """Whether the sending service must never come up (``no-bind`` without a delay)."""
        return self.no_bind and self.fail_after <= 0

    @property
    def delayed(self) -> bool:
        """Whether a failure waits for ``fail-after`` (so the worker starts clean)."""
        return self.fail_after > 0 and (self.no_bind or self.fail_submits > 0)

    def failing(self, elapsed: float) -> bool:
        """Whether the failure is in effect ``elapsed`` seconds after the worker started."""
        return elapsed >= self.fail_after

    def for_traffic_class(self, traffic_class: str) -> Faults:
        """The faults a worker of ``traffic_class`` runs: none when ``fail-class`` names another."""
        if self.fail_class and self.fail_class != traffic_class:
            return Faults()
        return self

    def should_fail_submit(self, rng: random.Random) -> bool:
        """Draw whether this submit fails under ``fail-submits``."""
        return self.fail_submits > 0 and rng.random() < self.fail_submits

    def describe(self) -> str:
        """The switch as it would be written, for logs and /readyz."""
        items = []
        if self.no_bind:
            items.append("no-bind")
        if self.fail_submits:
            items.append(f"fail-submits={self.fail_submits:g}")
        if self.slow_start:
            items.append(f"slow-start={self.slow_start:g}")
        if self.fail_after:
            items.append(f"fail-after={self.fail_after:g}")
        if self.fail_class:
            items.append(f"fail-class={self.fail_class}")
        return ",".join(items)


def parse_faults(spec: str, *, allowed: bool) -> Faults:
    """Parse a ``TIERGATE_FAULTS`` value; raise `ConfigError` if it is bad or not allowed."""
    spec = spec.strip()
    if not spec:
        return Faults()
    if not allowed:
        raise ConfigError(
            f"Fault switch refused faults={spec!r}: set {ALLOW_ENV}=1 to allow faults (drills and tests only)"
        )
    no_bind = False
    fail_submits = slow_start = fail_after = 0.0
    fail_class = ""
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        name, _, value = item.partition("=")
        name = name.strip()
        value = value.strip()
        if name == "no-bind" and not value:
            no_bind = True
        elif name == "fail-submits":
            fail_submits = _number(name, value)
            if not 0.0 <= fail_submits <= 1.0:
                raise ConfigError(f"Fault fail-submits must be within [0, 1], got {value!r}")
        elif name in ("slow-start", "fail-after"):
            seconds = _number(name, value)
            if seconds < 0:
                raise ConfigError(f"Fault {name} must not be negative, got {value!r}")
            if name == "slow-start":
                slow_start = seconds
            else:
                fail_after = seconds
        elif name == "fail-class" and value:
            fail_class = value
        else:
            raise ConfigError(f"Unknown fault {item!r}: known are {KNOWN}")
    if fail_after and not (no_bind or fail_submits):
        raise ConfigError(
            f"Fault fail-after needs a failure to delay (no-bind or fail-submits=F), got {spec!r}"
        )
    if fail_class and not (no_bind or fail_submits or slow_start):
        raise ConfigError(f"Fault fail-class needs a fault to limit, got {spec!r}")
    return Faults(
        no_bind=no_bind,
        fail_submits=fail_submits,
        slow_start=slow_start,
        fail_after=fail_after,
        fail_class=fail_class,
    )


def allowed_from_env(value: str | None) -> bool:
    """Whether the allow flag's value switches faults on."""
    return (value or "").strip().lower() in {"1", "true", "yes"}


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"Fault {name} needs a number, got {value!r}") from None
