"""The fault switch: deliberate misbehaviour for drills and tests, off unless allowed.

A drill plays a bad release by setting ``TIERGATE_FAULTS`` on a tier's pods. Because the
same switch in production would be an outage, it is refused unless
``TIERGATE_ALLOW_FAULTS=1`` is also set.

Grammar: comma-separated items, each ``name`` or ``name=value``:

- ``no-bind``: start and serve ``/healthz`` but never bring up the sending service
  (the September 2020 incident);
- ``fail-submits=FRACTION``: fail that share of submits as transient upstream errors;
- ``slow-start=SECONDS``: wait that long before starting the sending service.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tiergate.sender.errors import ConfigError

ALLOW_ENV = "TIERGATE_ALLOW_FAULTS"


@dataclass(frozen=True)
class Faults:
    """Which faults are switched on."""

    no_bind: bool = False
    fail_submits: float = 0.0
    slow_start: float = 0.0

    @property
    def any(self) -> bool:
        """Whether any fault is on."""
        return self.no_bind or self.fail_submits > 0 or self.slow_start > 0

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
    fail_submits = 0.0
    slow_start = 0.0
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
        elif name == "slow-start":
            slow_start = _number(name, value)
            if slow_start < 0:
                raise ConfigError(f"Fault slow-start must not be negative, got {value!r}")
        else:
            raise ConfigError(f"Unknown fault {item!r}: known are no-bind, fail-submits=F, slow-start=S")
    return Faults(no_bind=no_bind, fail_submits=fail_submits, slow_start=slow_start)


def allowed_from_env(value: str | None) -> bool:
    """Whether the allow flag's value switches faults on."""
    return (value or "").strip().lower() in {"1", "true", "yes"}


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"Fault {name} needs a number, got {value!r}") from None
