"""Token bucket for the fill's bandwidth cap (bytes per second), debt style.

``delay(n, now)`` takes n bytes *after* they were read and returns how long to wait before
reading more: the bucket may go negative (debt) by one read, and the wait pays it back. With
a burst of a fraction of a second the cap holds within a few percent over any fill of more
than a few bursts. Pure (``now`` passed in); ``take`` is the async wrapper.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """rate: bytes/s (<= 0: unlimited); burst: bucket size in bytes."""
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(64 * 1024, self.rate * 0.05))
        self.clock = clock
        self.tokens = self.burst
        self.stamp: float | None = None

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def delay(self, n: int, now: float) -> float:
        if self.unlimited:
            return 0.0
        if self.stamp is None:
            self.stamp = now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return -self.tokens / self.rate if self.tokens < 0 else 0.0

    def set_rate(self, rate: float) -> None:
        self.rate = float(rate)

    async def take(self, n: int) -> None:
        wait = self.delay(n, self.clock())
        if wait > 0:
            await asyncio.sleep(wait)
