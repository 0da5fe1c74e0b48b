"""What a worker does after a failed submit: pure decisions, no I/O.

Transient errors retry with exponential backoff and full jitter until the attempt count or
the message's age runs out; permanent errors discard at once. Throttling is not here: it
lowers the connector's rate (`tiergate.sender.routing.AimdRate`) and spends no attempt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

REASON_REJECTED = "rejected"
REASON_MAX_ATTEMPTS = "max-attempts"
REASON_MAX_AGE = "max-age"


@dataclass(frozen=True)
class RetryPolicy:
    """Limits and backoff shape for retries."""

    max_attempts: int = 8
    max_age: float = 6 * 3600.0
    base_delay: float = 1.0
    max_delay: float = 300.0

    def backoff(self, attempts: int, rng: random.Random) -> float:
        """Delay before the next try after `attempts` tries: capped exponential, jittered."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(0, attempts - 1)))
        return float(ceiling * (0.5 + 0.5 * rng.random()))

    def give_up_reason(self, attempts: int, age: float) -> str | None:
        """The discard reason if a transient failure after `attempts` tries ends the message."""
        if age >= self.max_age:
            return REASON_MAX_AGE
        if attempts >= self.max_attempts:
            return REASON_MAX_ATTEMPTS
        return None
