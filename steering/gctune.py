"""Garbage-collector settings for a steering server process, chosen for tail latency.

A collection stops the serving loop for time in proportion to the objects it scans
(~0.2 µs each here). Measured under load with the earlier settings (gen0 threshold 50,000):
one young collection scanned ~50k objects and stalled the loop 11 ms (CPU). So:
- young collections stay small (gen0 threshold ``YOUNG``: a few hundred µs at most);
- what survives them (memo entries, mostly) is frozen every ``FREEZE_S`` by the ticker
  (``gc.freeze`` is O(1)), so the older generations stay small and so do their collections;
- freezing also keeps any cycle that was alive at that moment out of reach once it turns to
  garbage, so every ``SWEEP_S`` everything is unfrozen and collected in full once (one
  longer pause, rare enough to stay out of the percentiles) and frozen again.
Tests run servers in-process and leave the collector alone (``tune`` is called by
``run_forever`` only).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

YOUNG = 1000
FREEZE_S = 0.2  # every tick
SWEEP_S = 600.0


class GcTuner:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.active = False
        self.frozen_at = self.swept_at = 0.0

    def start(self) -> None:
        """After start-up: what exists now lives as long as the server."""
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG, 20, 20)
        self.active = True
        self.frozen_at = self.swept_at = self.clock()

    def tick(self) -> None:
        """From the server's ticker (between requests)."""
        if not self.active:
            return
        now = self.clock()
        if now - self.swept_at >= SWEEP_S:
            self.swept_at = self.frozen_at = now
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        elif now - self.frozen_at >= FREEZE_S:
            self.frozen_at = now
            gc.freeze()
