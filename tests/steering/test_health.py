from __future__ import annotations

import math

import pytest

from contracts.reports import EdgeReport
from steering.health import (
    TRANSITIONS,
    EdgeHealth,
    EdgeState,
    Event,
    observe,
    report_load,
)

CFG = {"shed_low": 0.8, "down_after": 3, "up_after": 2}


def feed(h: EdgeHealth, *outcomes: tuple[bool, float]) -> list[EdgeState]:
    states = []
    for i, (ok, load) in enumerate(outcomes):
        observe(h, ok=ok, load=load, now=float(i), **CFG)
        states.append(h.state)
    return states


def test_transition_table_is_total() -> None:
    assert set(TRANSITIONS) == {(s, e) for s in EdgeState for e in Event}


def test_first_probe_decides_from_unknown() -> None:
    assert feed(EdgeHealth(), (True, 0.1)) == [EdgeState.UP]
    assert feed(EdgeHealth(), (False, 0)) == [EdgeState.DOWN]
    assert feed(EdgeHealth(), (True, 0.9)) == [EdgeState.SHEDDING]


def test_down_only_after_n_consecutive_failures() -> None:
    h = EdgeHealth(EdgeState.UP)
    assert feed(h, (False, 0), (False, 0), (True, 0), (False, 0), (False, 0), (False, 0)) == [
        EdgeState.UP, EdgeState.UP, EdgeState.UP, EdgeState.UP, EdgeState.UP, EdgeState.DOWN]


def test_up_only_after_m_consecutive_successes_via_recovering() -> None:
    h = EdgeHealth(EdgeState.DOWN)
    assert feed(h, (True, 0), (False, 0), (True, 0), (True, 0)) == [
        EdgeState.RECOVERING, EdgeState.DOWN, EdgeState.RECOVERING, EdgeState.UP]


def test_load_moves_between_up_and_shedding() -> None:
    h = EdgeHealth(EdgeState.UP)
    assert feed(h, (True, 0.85), (True, 0.5)) == [EdgeState.SHEDDING, EdgeState.UP]


def test_recovering_loaded_edge_comes_back_shedding() -> None:
    h = EdgeHealth(EdgeState.DOWN)
    assert feed(h, (True, 0.9), (True, 0.9)) == [EdgeState.RECOVERING, EdgeState.SHEDDING]


def test_observe_reports_change_and_keeps_last_error() -> None:
    h = EdgeHealth(EdgeState.UP)
    assert observe(h, ok=False, load=0, now=1, error="refused", shed_low=0.8, down_after=1,
                   up_after=1)
    assert (h.state, h.last_error, h.changed_at) == (EdgeState.DOWN, "refused", 1)
    assert not observe(h, ok=False, load=0, now=2, shed_low=0.8, down_after=1, up_after=1)


@pytest.mark.parametrize(("status", "egress", "cap", "fleet_cap", "want"), [
    ("ok", 50, 100, 1000, 0.5),
    ("ok", 50, 0, 1000, 0.05),  # edge does not know its capacity: the fleet file's
    ("degraded", 10, 100, 0, 0.1),
    ("ok", 10, 0, 0, 0.0),
    ("draining", 0, 100, 100, math.inf),
])
def test_report_load(status: str, egress: float, cap: float, fleet_cap: float,
                     want: float) -> None:
    rep = EdgeReport(status, 0, egress, cap, 0.0)
    assert report_load(rep, fleet_cap) == want
