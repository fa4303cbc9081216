"""How a /healthz answer becomes a probe outcome (probes.judge)."""

from __future__ import annotations

import json
import math

import pytest

from contracts.fleet import Edge
from steering.probes import judge

EDGE = Edge("e1", "http://127.0.0.1:1", "s", "r", capacity_bytes_per_s=1000.0)


def report(status: str = "ok", egress: float = 100.0, cap: float = 0.0) -> bytes:
    return json.dumps({"status": status, "active_connections": 1, "egress_bps": egress,
                       "capacity_bps": cap, "hit_ratio": 0.5}).encode()


@pytest.mark.parametrize(("status", "body", "ok", "load"), [
    (200, report(), True, 0.1),  # capacity from the fleet file
    (200, report(cap=200.0), True, 0.5),  # the edge's own capacity wins
    (200, report("degraded"), True, 0.1),  # degraded (e.g. disk full) still serves
    (200, report("draining"), True, math.inf),  # answering, but gets no new traffic
    (503, report("draining"), True, math.inf),
    (503, report("ok"), False, 0.0),
    (200, report("starting"), False, 0.0),
    (500, report(), False, 0.0),
    (200, b"not json", False, 0.0),
    (200, b'{"status": "ok"}', False, 0.0),  # fails EdgeReport validation
    (200, report(egress=-5), False, 0.0),
])
def test_judge(status: int, body: bytes, ok: bool, load: float) -> None:
    got_ok, got_load, err = judge(status, body, EDGE)
    assert (got_ok, got_load) == (ok, pytest.approx(load) if load != math.inf else load)
    assert bool(err) is not ok
