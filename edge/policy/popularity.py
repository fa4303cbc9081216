"""The production policy: popularity- and size-aware W-TinyLFU with a VOD segment prior.

Structure (Einziger, Friedman, Manes, "TinyLFU: A Highly Efficient Cache Admission Policy",
ACM ToS 2017; Caffeine's W-TinyLFU): a small LRU *window* takes every new object; objects
that leave the window must win a frequency duel against the main region's victim to stay.
The main region is a segmented LRU (probation / protected).  A one-hit wonder therefore
never displaces anything that has been requested more than once.

Frequency: exact counters with periodic halving (aging) instead of a count-min sketch: the
edge keeps large chunks, so keys are few and an exact table is both cheaper and deterministic.

VOD prior: early segments of a title are watched far more than late ones, and a segment that
was never requested before is still predictable from its neighbours.  For keys shaped like
``/titles/T/R/seg_N.ts[#chunk]`` requests are also counted per (title, rendition, segment
bucket), buckets growing geometrically with N; the per-segment average of its bucket is a
pooled estimate that a fresh segment of a hot title can win its admission duel with.
Opaque keys simply have no prior.

Size-aware: an object that leaves the window duels the main victims one by one until there is
room, so a large object must out-score every object it displaces (per byte, as the byte hit
ratio demands).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

from contracts.keys import ContentKey
from edge.policy.base import BasePolicy

WINDOW_RATIO = 0.01
PROTECTED_RATIO = 0.80
AGE_PERIOD_FACTOR = 10  # halve all counters every FACTOR x (resident objects) requests
MIN_AGE_PERIOD = 2048

_WINDOW, _PROBATION, _PROTECTED = 0, 1, 2


def _bucket(seg: int) -> tuple[int, int]:
    """Geometric segment buckets with 4 per octave: (bucket id, number of segments in it)."""
    if seg < 8:
        return seg, 1
    octave = seg.bit_length() - 1  # seg in [2**octave, 2**(octave+1))
    step = 1 << (octave - 2)
    sub = (seg - (1 << octave)) // step
    return 8 + (octave - 3) * 4 + sub, step


class PopularityPolicy(BasePolicy):
    name: ClassVar[str] = "popularity"

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._window_cap = max(1, int(capacity * WINDOW_RATIO))
        self._main_cap = capacity - self._window_cap
        self._protected_cap = int(self._main_cap * PROTECTED_RATIO)
        self._window: OrderedDict[str, int] = OrderedDict()
        self._probation: OrderedDict[str, int] = OrderedDict()
        self._protected: OrderedDict[str, int] = OrderedDict()
        self._where: dict[str, int] = {}
        self._window_used = self._probation_used = self._protected_used = 0
        self._freq: dict[str, int] = {}
        self._group_freq: dict[tuple[str, str, int], int] = {}
        self._groups: dict[str, tuple[tuple[str, str, int], int] | None] = {}
        self._ops = 0
        self._period = MIN_AGE_PERIOD

    # -- popularity ------------------------------------------------------------------------
    def _group(self, key: str) -> tuple[tuple[str, str, int], int] | None:
        """(title, rendition, bucket), bucket width for VOD segment keys; None otherwise."""
        try:
            return self._groups[key]
        except KeyError:
            pass
        g = None
        if key.startswith("/titles/"):
            obj = key.rpartition("#")[0] or key
            ck = ContentKey.parse(obj)
            if ck.title and ck.rendition and ck.segment is not None:
                b, width = _bucket(ck.segment)
                g = ((ck.title, ck.rendition, b), width)
        self._groups[key] = g
        return g

    def _record(self, key: str) -> None:
        freq = self._freq
        freq[key] = freq.get(key, 0) + 1
        g = self._group(key)
        if g is not None:
            gf = self._group_freq
            gf[g[0]] = gf.get(g[0], 0) + 1
        self._ops += 1
        if self._ops >= self._period:
            self._age()

    def _age(self) -> None:
        """Halve every counter (TinyLFU's reset), dropping those that reach zero."""
        self._freq = {k: v >> 1 for k, v in self._freq.items() if v > 1}
        self._group_freq = {k: v >> 1 for k, v in self._group_freq.items() if v > 1}
        if len(self._groups) > 4 * self._period:
            self._groups = {}
        self._ops = 0
        self._period = max(MIN_AGE_PERIOD, AGE_PERIOD_FACTOR * len(self._where))

    def score(self, key: str) -> float:
        """Estimated requests per aging period (own count, or its segment bucket's average)."""
        f = self._freq.get(key, 0)
        g = self._group(key)
        if g is not None:
            pooled = self._group_freq.get(g[0], 0) / g[1]
            if pooled > f:
                return pooled
        return f

    # -- hooks -----------------------------------------------------------------------------
    def _touch(self, key: str, size: int) -> bool:
        self._record(key)
        where = self._where.get(key)
        if where is None:
            return False
        if where == _WINDOW:
            self._window.move_to_end(key)
        elif where == _PROTECTED:
            self._protected.move_to_end(key)
        else:
            s = self._probation.pop(key)
            self._probation_used -= s
            self._protected[key] = s
            self._protected_used += s
            self._where[key] = _PROTECTED
            while self._protected_used > self._protected_cap and len(self._protected) > 1:
                k, ds = self._protected.popitem(last=False)
                self._protected_used -= ds
                self._probation[k] = ds
                self._probation_used += ds
                self._where[k] = _PROBATION
        return True

    def _attach(self, key: str, size: int) -> None:
        self._window[key] = size
        self._window_used += size
        self._where[key] = _WINDOW

    def _detach(self, key: str) -> int | None:
        where = self._where.pop(key, None)
        if where is None:
            return None
        if where == _WINDOW:
            size = self._window.pop(key)
            self._window_used -= size
        elif where == _PROBATION:
            size = self._probation.pop(key)
            self._probation_used -= size
        else:
            size = self._protected.pop(key)
            self._protected_used -= size
        return size

    def _main_victim(self) -> str | None:
        if self._probation:
            return next(iter(self._probation))
        if self._protected:
            return next(iter(self._protected))
        return None

    def _evict(self) -> tuple[str, int] | None:
        window = self._window
        while self._window_used > self._window_cap and window:
            cand = next(iter(window))
            csize = window[cand]
            if self._probation_used + self._protected_used + csize <= self._main_cap:
                window.popitem(last=False)
                self._window_used -= csize
                self._probation[cand] = csize
                self._probation_used += csize
                self._where[cand] = _PROBATION
                continue
            victim = self._main_victim()
            if victim is not None and self.score(cand) > self.score(victim):
                return victim, self._detach(victim)  # type: ignore[return-value]
            return cand, self._detach(cand)  # type: ignore[return-value]
        victim = self._main_victim()
        if victim is None:
            victim = next(iter(window), None)
            if victim is None:
                return None
        return victim, self._detach(victim)  # type: ignore[return-value]

    def _resident(self, key: str) -> bool:
        return key in self._where

    def _count(self) -> int:
        return len(self._where)

    def _check(self) -> int:
        regions = ((self._window, _WINDOW, self._window_used),
                   (self._probation, _PROBATION, self._probation_used),
                   (self._protected, _PROTECTED, self._protected_used))
        total = 0
        n = 0
        for od, tag, used in regions:
            assert sum(od.values()) == used, f"region {tag} byte count stale"
            assert all(self._where.get(k) == tag for k in od), f"region {tag} index stale"
            total += used
            n += len(od)
        assert n == len(self._where), "index holds keys no region has"
        assert all(v > 0 for v in self._freq.values())
        return total
