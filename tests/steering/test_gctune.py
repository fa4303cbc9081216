"""The steering server's collector tuning: survivors frozen after each collection, and the
rare full sweep that reclaims cycles which were frozen while still alive."""

from __future__ import annotations

import gc
import weakref

from steering.gctune import SWEEP_S, GcTuner


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_survivors_are_frozen_and_a_sweep_reclaims_frozen_cycles() -> None:
    now = [1000.0]
    old = gc.get_threshold()
    t = GcTuner(clock=lambda: now[0])
    t.start()
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle, alive during the next collection
        probe = weakref.ref(a)
        frozen = gc.get_freeze_count()
        gc.collect(0)
        assert gc.get_freeze_count() > frozen
        del a, b  # now garbage, but frozen: no collection can reach it
        gc.collect(0)
        assert probe() is not None
        t.tick()  # too early for a sweep
        assert probe() is not None and t.sweeps == 0
        now[0] += SWEEP_S
        t.tick()
        assert probe() is None and t.sweeps == 1
        assert gc.get_freeze_count() > 0  # what survived the sweep is frozen again
    finally:
        t.stop(old)
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == old
