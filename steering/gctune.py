"""Garbage-collector settings for a steering server process, chosen for tail latency.

A collection stops the serving loop for time in proportion to the objects it scans
(~0.2 µs each here). Measured under load: with a gen0 threshold of 50,000 one young
collection scanned ~50k objects (11 ms CPU); with a small gen0 but survivors left in gen1,
each load-band re-sort of the site-order memo (~20k tuples within a tick) made the next
gen1 collection scan them all (2-7 ms CPU). So:
- young collections stay small (gen0 threshold ``YOUNG``: a few hundred µs at most);
- whatever survives a collection is frozen at once (``gc.freeze`` is O(1), from a
  ``gc.callbacks`` hook), so the older generations stay empty and never cost a pause; the
  long-lived objects are memo entries and fleet data, freed by refcount when dropped;
- a cycle that was alive when frozen stays out of reach once it turns to garbage, so every
  ``SWEEP_S`` everything is unfrozen and collected in full once (one longer pause, tens of
  ms, rare enough to stay out of the percentiles) and frozen again.
Tests run servers in-process and leave the collector alone (``start`` is called by
``run_forever`` only).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

YOUNG = 1000
SWEEP_S = 600.0


class GcTuner:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.active = False
        self.swept_at = 0.0
        self.sweeps = 0

    def start(self) -> None:
        """After start-up: what exists now lives as long as the server."""
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG, 10, 10)
        gc.callbacks.append(self._after_collection)
        self.active = True
        self.swept_at = self.clock()

    def stop(self, threshold: tuple[int, int, int] = (700, 10, 10)) -> None:
        """Back to the stock collector (tests)."""
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        gc.unfreeze()
        gc.set_threshold(*threshold)
        self.active = False

    @staticmethod
    def _after_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            gc.freeze()  # survivors leave the collector's generations (O(1))

    def tick(self) -> None:
        """From the server's ticker (between requests): the rare full sweep."""
        if not self.active:
            return
        now = self.clock()
        if now - self.swept_at >= SWEEP_S:
            self.swept_at = now
            self.sweeps += 1
            gc.unfreeze()
            gc.collect()  # the callback freezes what survives
