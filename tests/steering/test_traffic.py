from __future__ import annotations

import pytest

from steering.traffic import Ramp, TrafficShifter


def test_ramp_moves_linearly_and_retargets_from_current_value() -> None:
    r = Ramp(1.0, 1.0).to(0.0, now=100, duration=10)
    assert [r.value(t) for t in (99, 100, 105, 110, 200)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    back = r.to(1.0, now=105, duration=10)
    assert back.value(105) == 0.5 and back.value(110) == pytest.approx(0.75)
    assert Ramp(3, 3).to(7, now=0, duration=0).value(0) == 7


def shifter(**kw: float) -> TrafficShifter:
    args = {"ramp_seconds": 30, "evacuate_below": 0.25, "restore_above": 0.5} | kw
    return TrafficShifter(["a", "b"], **args)


def test_admin_evacuation_ramps_keep_to_zero_and_restore_back() -> None:
    s = shifter()
    s.evacuate("a", now=0)
    assert s.factors(15)[1]["a"] == pytest.approx(0.5)
    assert s.factors(30)[1] == {"a": 0.0, "b": 1.0}
    s.restore("a", now=30)
    assert s.factors(45)[1]["a"] == pytest.approx(0.5)
    assert s.settled(60) and not s.settled(59)


def test_weights_ramp_and_bad_weights_change_nothing() -> None:
    s = shifter()
    s.set_weights({"a": 70, "b": 30}, now=0)
    w, _ = s.factors(15)
    assert w == {"a": pytest.approx(85), "b": pytest.approx(65)}
    with pytest.raises(ValueError):
        s.set_weights({"a": 1, "b": -1}, now=0)
    with pytest.raises(KeyError):
        s.set_weights({"a": 1, "zz": 1}, now=0)
    assert s.factors(30)[0] == {"a": 70, "b": 30}


def test_auto_evacuation_below_threshold_and_return_with_hysteresis() -> None:
    s = shifter(ramp_seconds=0)
    assert s.observe_capacity({"a": 1.0, "b": 1.0}, now=0) == []
    assert s.observe_capacity({"a": 0.2, "b": 1.0}, now=0) == ["evacuate:a"]
    assert s.factors(0)[1]["a"] == 0.0
    assert s.observe_capacity({"a": 0.4}, now=1) == []  # between thresholds: stays out
    assert s.observe_capacity({"a": 0.5}, now=2) == ["return:a"]
    assert s.factors(2)[1]["a"] == 1.0


def test_a_region_not_yet_in_service_is_not_evacuated_and_never_ramps_from_zero() -> None:
    """Start-up: edges still starting (fraction 0, then rising) are no loss of capacity."""
    s = shifter()  # ramp 30 s
    assert s.observe_capacity({"a": 0.0, "b": 0.2}, now=0) == []
    assert s.factors(1)[1] == {"a": 1.0, "b": 1.0}
    assert s.observe_capacity({"a": 0.4, "b": 1.0}, now=2) == []
    assert s.factors(2)[1] == {"a": 1.0, "b": 1.0} and s.settled(2)
    assert s.describe(2)["b"]["armed"] and not s.describe(2)["a"]["armed"]
    # once in service, a loss of capacity does evacuate (ramped)
    assert s.observe_capacity({"a": 0.6}, now=3) == []
    assert s.observe_capacity({"a": 0.1}, now=4) == ["evacuate:a"]
    assert s.factors(19)[1]["a"] == pytest.approx(0.5)


def test_auto_return_does_not_undo_an_admin_evacuation() -> None:
    s = shifter(ramp_seconds=0)
    s.evacuate("a", now=0)
    s.observe_capacity({"a": 0.1}, now=1)
    s.observe_capacity({"a": 1.0}, now=2)
    assert s.factors(2)[1]["a"] == 0.0


def test_auto_evacuation_can_be_disabled() -> None:
    s = shifter(evacuate_below=0.0)
    assert s.observe_capacity({"a": 0.0}, now=0) == []


def test_snapshot_round_trip_and_bad_snapshots_change_nothing() -> None:
    s = shifter()
    s.set_weights({"a": 70}, now=0)
    s.evacuate("b", now=0)
    snap = s.snapshot()
    t = shifter()
    t.load_snapshot(snap, now=5)
    assert t.factors(5) == ({"a": 70, "b": 100}, {"a": 1.0, "b": 0.0})
    for bad in ({"version": 2}, {"version": 1, "weights": {"a": -5}}, [], {"version": 1,
                                                                          "weights": []}):
        u = shifter()
        with pytest.raises(ValueError):
            u.load_snapshot(bad, now=0)
        assert u.factors(0) == ({"a": 100, "b": 100}, {"a": 1.0, "b": 1.0})
