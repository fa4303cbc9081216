from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steering.shedding import keeps, shed_probability


@pytest.mark.parametrize(("load", "p"), [(0.0, 0.0), (0.8, 0.0), (0.875, 0.5), (0.95, 1.0),
                                         (3.0, 1.0), (float("inf"), 1.0)])
def test_shed_probability_rises_linearly_between_watermarks(load: float, p: float) -> None:
    assert shed_probability(load, 0.8, 0.95) == pytest.approx(p)


@given(st.floats(0, 2), st.floats(0, 2))
def test_shed_probability_is_monotonic(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert shed_probability(lo, 0.8, 0.95) <= shed_probability(hi, 0.8, 0.95)


def test_kept_fraction_matches_probability_and_is_deterministic() -> None:
    def run(seed: int) -> int:
        r = random.Random(seed)
        return sum(keeps(0.9, 0.8, 1.0, r.random()) for _ in range(20_000))

    assert run(1) == run(1)
    assert run(1) / 20_000 == pytest.approx(0.5, abs=0.02)
