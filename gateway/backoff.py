"""Retry delays: exponential with full jitter, capped, reset on success.

One policy for every retry in the gateway: the uplink's reconnects, a supervised task's
restarts, a serial port that was unplugged.

Full jitter (a uniform draw between the floor and the exponential ceiling) spreads the
reconnects of 10^4 gateways after a broker restart instead of having them arrive in waves.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays for successive failed attempts: ``min_s`` ... ``max_s``."""

    def __init__(
        self, min_s: float, max_s: float, *, factor: float = 2.0, rng: random.Random | None = None
    ) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self.factor = factor
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The delay before the next attempt; counts one more failure."""
        ceiling = min(self.max_s, self.min_s * self.factor ** min(self.failures, 64))
        self.failures += 1
        return self._rng.uniform(self.min_s, max(self.min_s, ceiling))

    def reset(self) -> None:
        self.failures = 0
