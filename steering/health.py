"""Health state of one edge, as seen by steering's probes. Everything that moves the state lives here.

Rules of this file:
- States are the members of ``EdgeState``; the only way between them is ``TRANSITIONS``.
- A probe result becomes an ``Event`` in ``classify``; counters (consecutive failures and
  successes) turn an ordinary event into its ``*_ENOUGH`` form when a threshold is reached.
- No clocks and no sockets: the probe shell passes ``now`` and the outcome in.

    unknown --ok--> up <--ok-- shedding          (loaded: load >= shed_low, or draining)
       |            |  --loaded-->  |
       |        fails >= N      fails >= N
       v            v               v
      down --ok/loaded--> recovering --M oks--> up / shedding
        ^                     |
        +-------fail----------+
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from contracts.reports import EdgeReport


class EdgeState(enum.Enum):
    UNKNOWN = "unknown"  # not probed yet: no traffic
    UP = "up"
    SHEDDING = "shedding"  # answering but loaded: traffic removed with rising probability
    DOWN = "down"
    RECOVERING = "recovering"  # answering again after down, not yet trusted


class Event(enum.Enum):
    OK = "ok"  # good report, load below shed_low
    LOADED = "loaded"  # good report, load at/above shed_low (or draining)
    FAIL = "fail"  # no answer, timeout, bad status or invalid report
    FAIL_ENOUGH = "fail_enough"  # FAIL that makes down_after consecutive failures
    OK_ENOUGH = "ok_enough"  # OK that makes up_after consecutive successes
    LOADED_ENOUGH = "loaded_enough"


S, E = EdgeState, Event
TRANSITIONS: dict[tuple[EdgeState, Event], EdgeState] = {
    (S.UNKNOWN, E.OK): S.UP, (S.UNKNOWN, E.OK_ENOUGH): S.UP,
    (S.UNKNOWN, E.LOADED): S.SHEDDING, (S.UNKNOWN, E.LOADED_ENOUGH): S.SHEDDING,
    (S.UNKNOWN, E.FAIL): S.DOWN, (S.UNKNOWN, E.FAIL_ENOUGH): S.DOWN,

    (S.UP, E.OK): S.UP, (S.UP, E.OK_ENOUGH): S.UP,
    (S.UP, E.LOADED): S.SHEDDING, (S.UP, E.LOADED_ENOUGH): S.SHEDDING,
    (S.UP, E.FAIL): S.UP, (S.UP, E.FAIL_ENOUGH): S.DOWN,

    (S.SHEDDING, E.OK): S.UP, (S.SHEDDING, E.OK_ENOUGH): S.UP,
    (S.SHEDDING, E.LOADED): S.SHEDDING, (S.SHEDDING, E.LOADED_ENOUGH): S.SHEDDING,
    (S.SHEDDING, E.FAIL): S.SHEDDING, (S.SHEDDING, E.FAIL_ENOUGH): S.DOWN,

    (S.DOWN, E.OK): S.RECOVERING, (S.DOWN, E.LOADED): S.RECOVERING,
    (S.DOWN, E.OK_ENOUGH): S.UP, (S.DOWN, E.LOADED_ENOUGH): S.SHEDDING,
    (S.DOWN, E.FAIL): S.DOWN, (S.DOWN, E.FAIL_ENOUGH): S.DOWN,

    (S.RECOVERING, E.OK): S.RECOVERING, (S.RECOVERING, E.LOADED): S.RECOVERING,
    (S.RECOVERING, E.OK_ENOUGH): S.UP, (S.RECOVERING, E.LOADED_ENOUGH): S.SHEDDING,
    (S.RECOVERING, E.FAIL): S.DOWN, (S.RECOVERING, E.FAIL_ENOUGH): S.DOWN,
}

SERVING = frozenset({EdgeState.UP, EdgeState.SHEDDING})


@dataclass(slots=True)
class EdgeHealth:
    state: EdgeState = EdgeState.UNKNOWN
    fails: int = 0  # consecutive
    oks: int = 0  # consecutive
    load: float = 0.0  # egress / capacity from the last good report
    last_probe: float = 0.0  # unix time of the last probe
    last_ok: float = 0.0
    last_error: str = ""
    latency_s: float = 0.0
    changed_at: float = 0.0
    serving: bool = False  # state in SERVING, kept in step by observe (read per view rebuild)


def report_load(report: EdgeReport, fleet_capacity_bps: float) -> float:
    """Load from a report: the edge's own capacity if it knows it, else the fleet file's."""
    if report.status == "draining":
        return math.inf
    cap = report.capacity_bps if report.capacity_bps > 0 else fleet_capacity_bps
    return report.egress_bps / cap if cap > 0 else 0.0


def classify(h: EdgeHealth, ok: bool, load: float, shed_low: float, down_after: int,
             up_after: int) -> Event:
    """Probe outcome -> event, counting consecutive outcomes (mutates h's counters)."""
    if not ok:
        h.fails += 1
        h.oks = 0
        return E.FAIL_ENOUGH if h.fails >= down_after else E.FAIL
    h.oks += 1
    h.fails = 0
    loaded = load >= shed_low
    if h.oks >= up_after:
        return E.LOADED_ENOUGH if loaded else E.OK_ENOUGH
    return E.LOADED if loaded else E.OK


def observe(h: EdgeHealth, *, ok: bool, load: float, now: float, shed_low: float,
            down_after: int, up_after: int, error: str = "", latency_s: float = 0.0) -> bool:
    """Apply one probe result; returns True when the state changed."""
    event = classify(h, ok, load, shed_low, down_after, up_after)
    new = TRANSITIONS[(h.state, event)]
    h.last_probe = now
    h.latency_s = latency_s
    if ok:
        h.load = load
        h.last_ok = now
        h.last_error = ""
    else:
        h.last_error = error
    if new is h.state:
        return False
    h.state = new
    h.serving = new in SERVING
    h.changed_at = now
    return True
