"""NS1-style load shedding: between the low and high watermarks an edge is dropped from an
answer with a probability rising linearly from 0 to 1, so load eases off instead of the edge
flapping between all and nothing. Deterministic given the random draw passed in."""

from __future__ import annotations


def shed_probability(load: float, low: float, high: float) -> float:
    if load <= low:
        return 0.0
    if load >= high:
        return 1.0
    return (load - low) / (high - low)


def keeps(load: float, low: float, high: float, draw: float) -> bool:
    """True when an edge at ``load`` stays in the answer for a uniform draw in [0, 1)."""
    return draw >= shed_probability(load, low, high)
