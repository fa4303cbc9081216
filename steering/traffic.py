"""Region traffic shifting: weights and evacuations, each ramped linearly over a period.

Two numbers per region, both ramped:
- ``weight`` (>= 0, default 100): how clients covered by several regions are split between them.
- ``keep`` (0..1): the share of the traffic a region would get that it keeps; the rest spills
  to the next-nearest regions. Evacuation moves keep to 0; restore moves it back to 1.
A region is evacuated by an operator (admin API) or automatically when its healthy capacity
falls below ``evacuate_below``; the automatic one ends when capacity is back above
``restore_above`` (hysteresis, so a flapping edge does not flap the region). Automatic
evacuation is *armed* only once the region has been seen in service (healthy fraction at or
above ``restore_above``): at start-up, edges that are still starting or not yet probed are
not a loss of capacity, and a region that was never evacuated must not ramp up from 0 (the
ranking already skips edges that do not serve). Pure: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

DEFAULT_WEIGHT = 100.0


@dataclass(frozen=True, slots=True)
class Ramp:
    """A value moving linearly from ``start`` at ``t0`` to ``target`` at ``t0 + duration``."""

    start: float
    target: float
    t0: float = 0.0
    duration: float = 0.0

    def value(self, now: float) -> float:
        if self.duration <= 0 or now >= self.t0 + self.duration:
            return self.target
        if now <= self.t0:
            return self.start
        return self.start + (self.target - self.start) * (now - self.t0) / self.duration

    def to(self, target: float, now: float, duration: float) -> Ramp:
        if target == self.target:
            return self
        return Ramp(self.value(now), target, now, duration)

    def settled(self, now: float) -> bool:
        return self.duration <= 0 or now >= self.t0 + self.duration


@dataclass(slots=True)
class RegionTraffic:
    weight: Ramp = field(default_factory=lambda: Ramp(DEFAULT_WEIGHT, DEFAULT_WEIGHT))
    keep: Ramp = field(default_factory=lambda: Ramp(1.0, 1.0))
    admin_evacuated: bool = False
    auto_evacuated: bool = False
    healthy_fraction: float = 1.0
    armed: bool = False  # seen in service once: automatic evacuation may act from now on


class TrafficShifter:
    def __init__(self, regions: Iterable[str], ramp_seconds: float, evacuate_below: float,
                 restore_above: float, weights: Mapping[str, float] | None = None) -> None:
        self.ramp = ramp_seconds
        self.evacuate_below = evacuate_below
        self.restore_above = restore_above
        self.regions: dict[str, RegionTraffic] = {r: RegionTraffic() for r in regions}
        for r, w in (weights or {}).items():
            self._need(r).weight = Ramp(w, w)

    def _need(self, region: str) -> RegionTraffic:
        try:
            return self.regions[region]
        except KeyError:
            raise KeyError(f"unknown region {region!r}") from None

    def set_weights(self, weights: Mapping[str, float], now: float,
                    ramp: float | None = None) -> None:
        """Validate all first, then apply: a bad entry changes nothing."""
        for r, w in weights.items():
            self._need(r)
            if not isinstance(w, int | float) or isinstance(w, bool) or not 0 <= w <= 1e6:
                raise ValueError(f"weight for {r!r} must be a number in [0, 1e6]")
        d = self.ramp if ramp is None else ramp
        for r, w in weights.items():
            self.regions[r].weight = self.regions[r].weight.to(float(w), now, d)

    def evacuate(self, region: str, now: float, ramp: float | None = None) -> None:
        t = self._need(region)
        t.admin_evacuated = True
        self._retarget(t, now, ramp)

    def restore(self, region: str, now: float, ramp: float | None = None) -> None:
        t = self._need(region)
        t.admin_evacuated = False
        self._retarget(t, now, ramp)

    def _retarget(self, t: RegionTraffic, now: float, ramp: float | None) -> None:
        target = 0.0 if (t.admin_evacuated or t.auto_evacuated) else 1.0
        t.keep = t.keep.to(target, now, self.ramp if ramp is None else ramp)

    def observe_capacity(self, healthy_fraction: Mapping[str, float], now: float) -> list[str]:
        """Feed each region's healthy capacity fraction (regions with no probe result yet are
        left out by the caller); returns 'evacuate:R'/'return:R' changes."""
        changes = []
        for r, frac in healthy_fraction.items():
            t = self.regions.get(r)
            if t is None:
                continue
            t.healthy_fraction = frac
            if not t.armed:
                if frac < self.restore_above:
                    continue  # not in service yet (start-up): nothing to evacuate from
                t.armed = True
            if self.evacuate_below <= 0:
                continue
            if not t.auto_evacuated and frac < self.evacuate_below:
                t.auto_evacuated = True
                changes.append(f"evacuate:{r}")
            elif t.auto_evacuated and frac >= self.restore_above:
                t.auto_evacuated = False
                changes.append(f"return:{r}")
            else:
                continue
            self._retarget(t, now, None)
        return changes

    def factors(self, now: float) -> tuple[dict[str, float], dict[str, float]]:
        """(weight, keep) per region at ``now``."""
        return ({r: t.weight.value(now) for r, t in self.regions.items()},
                {r: t.keep.value(now) for r, t in self.regions.items()})

    def settled(self, now: float) -> bool:
        return all(t.weight.settled(now) and t.keep.settled(now) for t in self.regions.values())

    def snapshot(self) -> dict[str, object]:
        """What operators set (targets, not ramp positions): persisted across restarts."""
        return {"version": 1,
                "weights": {r: t.weight.target for r, t in self.regions.items()},
                "evacuated": sorted(r for r, t in self.regions.items() if t.admin_evacuated)}

    def load_snapshot(self, doc: object, now: float) -> None:
        """Apply a snapshot at once (no ramp); ValueError, changing nothing, if invalid."""
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise ValueError("not a version 1 steering state")
        weights, evac = doc.get("weights", {}), doc.get("evacuated", [])
        if not isinstance(weights, dict) or not isinstance(evac, list):
            raise ValueError("weights must be an object and evacuated a list")
        known = {r: w for r, w in weights.items() if r in self.regions}
        self.set_weights(known, now, ramp=0)  # validates before applying
        for r in evac:
            if r in self.regions:
                self.evacuate(r, now, ramp=0)

    def describe(self, now: float) -> dict[str, dict[str, object]]:
        return {
            r: {
                "weight": round(t.weight.value(now), 3), "weight_target": t.weight.target,
                "keep": round(t.keep.value(now), 4), "keep_target": t.keep.target,
                "evacuated": t.admin_evacuated, "auto_evacuated": t.auto_evacuated,
                "healthy_fraction": round(t.healthy_fraction, 4), "armed": t.armed,
            }
            for r, t in self.regions.items()
        }
