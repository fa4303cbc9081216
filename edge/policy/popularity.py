"""The production policy: popularity- and size-aware W-TinyLFU with a model of VOD viewing.

Base structure (Einziger, Friedman, Manes, "TinyLFU: A Highly Efficient Cache Admission
Policy", ACM ToS 2017; Caffeine's W-TinyLFU): a small LRU *window* takes new objects; one
that leaves the window must win a popularity duel against the main region's victim to stay.
The main region is a segmented LRU (probation / protected).  A one-hit wonder therefore never
displaces anything that has been requested more than once.  Where this differs from Caffeine:

- Frequency is an exact table halved every ``AGE_FACTOR`` x (resident objects) requests
  instead of a 4-bit count-min sketch: the edge keeps 2 MiB chunks, so keys are few, and an
  exact table is deterministic.  Scores are *rates* (count / total count), so halving does
  not change their order.
- The main victim is the least popular of the ``SAMPLE`` oldest probation entries (at most
  ``SAMPLE_SHARE`` of probation, so a newcomer has a while for its followers to show up),
  not just the oldest one (sampled eviction, as in Redis or hyperbolic caching).  The sorted
  sample is rebuilt every ``SAMPLE_TTL`` requests at most (every 1/16 of a segment gap once
  VOD viewers are seen, so followers' ETAs stay current); in between, keys that leave
  probation leave it, so the common case, a door duel that refuses, costs one score.
- Size-aware: a newcomer must out-score *every* object it displaces, one by one, until it
  has freed its own size (scores are per object, not per byte, because what the edge is
  judged on is the byte hit ratio: a byte of a big object is worth a byte of a small one).

VOD model.  Keys shaped like ``/titles/T/R/seg_N.ts[#chunk]`` (contracts.keys.ContentKey)
get a better estimate than their own count, which for a segment is small and noisy.  Viewing
is structured: sessions start at segment 0 and abandon, ABR picks renditions by position.
So a segment's request rate is estimated from its title's traffic around that position
(title x geometric segment bucket, all renditions pooled) times the share its rendition has
at that position (rendition x bucket, all titles pooled).  This predicts segments that were
never requested before (a fresh segment of a hot title wins its duel at once) and knows that
segment 900 of a title is watched less than segment 3.  VOD segments skip the window and
duel at the door, since their popularity is already estimated, and a segment that is hit
again gets a larger protected share (``PROTECTED_RATIO_VOD``); opaque keys (any other trace,
playlists) take the W-TinyLFU path unchanged.

Viewers on their way.  A steady rate says nothing about *when*, and in VOD the when is often
known: a viewer who has just asked for segment n-j of a stream will ask for segment n about j
segment gaps later (sessions play in order, in real time).  The policy keeps, per (title,
rendition), when each position was last asked for, and learns the usual gap (in requests)
between a viewer's consecutive segments.  A segment with a viewer behind it who has not yet
reached it gets the rate 1/d of a request due in about d requests, as Belady would (keep what
is needed soonest).  This is interval caching (Dan and Sitaram, 1996) without sessions: it
keeps the run of segments between two viewers of the same stream.  At the door the requester
is himself one gap behind, so there only viewers well short of their ETA count.

The constants below were tuned with ``edgecdn bench trace`` on the shared traces and the
synthetic VOD workload (bench/workloads.py) at 1%, 5% and 10% of unique bytes.
"""

from __future__ import annotations

import bisect
import itertools
from collections import OrderedDict
from typing import ClassVar

from contracts.keys import ContentKey
from edge.policy.base import BasePolicy

WINDOW_RATIO = 0.30  # window share of capacity, for keys without a VOD estimate
PROTECTED_RATIO = 0.55  # protected share of the main region (opaque keys)
PROTECTED_RATIO_VOD = 0.80  # ... when a VOD segment is promoted
AGE_FACTOR = 60  # halve counters every AGE_FACTOR x resident objects requests...
MIN_AGE_PERIOD = 4096  # ...but not more often than this
MODEL_AGE_EVERY = 8  # the VOD model (few, aggregated counters) keeps a longer memory
SAMPLE_TTL = 128  # requests a cached sample of victim scores stays valid, at most...
SAMPLE_TTL_GAP = 0.0625  # ...and at most this share of a segment gap (followers move)...
SAMPLE_TTL_MIN = 16  # ...but at least this many
SAMPLE = 256  # probation entries examined for the least popular victim...
SAMPLE_SHARE = 0.75  # ...at most this share of probation, the oldest: newcomers get a while
SAMPLE_MIN = 16  # ...and at least this many
MIX = 0.65  # weight of the VOD model in a segment's score (the rest: its own count)
# positions behind a segment searched for a viewer still on his way to it: a bigger cache
# can keep the run of segments between two viewers further apart.  FOLLOW_BACK_BASE +
# FOLLOW_BACK_SLOPE x (segment gaps of traffic the cache holds), within FOLLOW_BACK_MAX.
FOLLOW_BACK_BASE = 9.0
FOLLOW_BACK_SLOPE = 0.5
FOLLOW_BACK_MAX = 32
FOLLOW_P = 1.0  # chance such a viewer does reach it (he may abandon first)
FOLLOW_SLACK = 0.5  # a viewer is still on his way up to this many segment gaps past his ETA
DOOR_MARGIN = 1.5  # at the door, a viewer must be at least this many gaps from his ETA
GAP_INIT = 512.0  # requests between a viewer's consecutive segments, until measured
GAP_EWMA = 1 / 64

_WINDOW, _PROBATION, _PROTECTED = 0, 1, 2

Segment = tuple[str, str, int, int]  # title, rendition, bucket, bucket width
# ... plus the (title, rendition) stream and the segment number, for the follower signal
_Seg = tuple[str, str, int, int, tuple[str, str], int]


def _bucket(seg: int) -> tuple[int, int]:
    """Geometric segment buckets, 4 per octave after 0..7: (bucket id, segments in it)."""
    if seg < 8:
        return seg, 1
    octave = seg.bit_length() - 1  # seg in [2**octave, 2**(octave + 1))
    step = 1 << (octave - 2)
    return 8 + (octave - 3) * 4 + (seg - (1 << octave)) // step, step


def _parse(key: str) -> _Seg | None:
    """What the policy keeps per VOD segment key: its model cell and its viewing position."""
    if not key.startswith("/titles/"):
        return None
    obj, sep, _ = key.rpartition("#")
    ck = ContentKey.parse(obj if sep else key)
    if ck.title is None or ck.rendition is None or ck.segment is None:
        return None
    b, width = _bucket(ck.segment)
    return ck.title, ck.rendition, b, width, (ck.title, ck.rendition), ck.segment


def parse_segment(key: str) -> Segment | None:
    """(title, rendition, bucket, width) for a VOD segment (or chunk of one); else None."""
    g = _parse(key)
    return None if g is None else g[:4]


class PopularityPolicy(BasePolicy):
    name: ClassVar[str] = "popularity"

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._window_cap = int(capacity * WINDOW_RATIO)
        self._window: OrderedDict[str, int] = OrderedDict()
        self._probation: OrderedDict[str, int] = OrderedDict()
        self._protected: OrderedDict[str, int] = OrderedDict()
        self._where: dict[str, int] = {}
        self._window_used = self._probation_used = self._protected_used = 0
        # popularity
        self._freq: dict[str, int] = {}
        self._f_total = 0.0
        self._segs: dict[str, _Seg | None] = {}
        self._title_pos: dict[tuple[str, int], float] = {}  # (title, bucket) -> requests
        self._rend_pos: dict[tuple[str, int], float] = {}  # (rendition, bucket) -> requests
        self._pos: dict[int, float] = {}  # bucket -> requests
        self._m_total = 0.0
        self._last: dict[tuple[str, str], dict[int, int]] = {}  # stream -> seg -> clock
        self._gap = GAP_INIT
        self._gaps = 0
        self._seg_bytes = 0.0  # mean size of a segment request (moving average)
        self._back = int(FOLLOW_BACK_BASE)
        self._before = -1
        self._before_at: tuple[tuple[str, str], int] | None = None
        self._prune_at = MIN_AGE_PERIOD
        self._ops = 0
        self._ages = 0
        self._period = MIN_AGE_PERIOD
        # the duel in progress: a window candidate and the bytes it has won so far
        self._incoming = 0
        self._last_key = ""  # the request victims() is making room for
        self._cand: str | None = None
        self._cand_won = 0
        # the oldest probation entries sorted by score, reused for at most SAMPLE_TTL
        # requests (kept up to date as keys leave probation: see _unsample, _to_probation)
        self._clock = 0
        self._sample_at = -SAMPLE_TTL - 1  # clock of the last rebuild
        self._sample: list[tuple[float, str, int]] = []
        self._sampled: set[str] = set()  # the keys in _sample

    # -- popularity ------------------------------------------------------------------------
    def _segment(self, key: str) -> _Seg | None:
        try:
            return self._segs[key]
        except KeyError:
            g = self._segs[key] = _parse(key)
            return g

    def _record(self, key: str) -> None:
        freq = self._freq
        freq[key] = freq.get(key, 0) + 1
        self._f_total += 1.0
        self._m_total += 1.0
        self._clock += 1
        g = self._segment(key)
        if g is not None:
            title, rend, b, _, stream, seg = g
            tp, rp, pos = self._title_pos, self._rend_pos, self._pos
            tp[title, b] = tp.get((title, b), 0.0) + 1.0
            rp[rend, b] = rp.get((rend, b), 0.0) + 1.0
            pos[b] = pos.get(b, 0.0) + 1.0
            self._seen(stream, seg)
        self._ops += 1
        if self._clock >= self._prune_at:
            self._prune()
        if self._ops >= self._period:
            self._age()

    def _age(self) -> None:
        """Halve the counters (TinyLFU's reset), dropping those that reach zero."""
        self._freq = {k: v >> 1 for k, v in self._freq.items() if v > 1}
        self._f_total *= 0.5
        self._ages += 1
        if self._ages % MODEL_AGE_EVERY == 0:
            self._title_pos = {k: v * 0.5 for k, v in self._title_pos.items() if v > 0.25}
            self._rend_pos = {k: v * 0.5 for k, v in self._rend_pos.items() if v > 0.25}
            self._pos = {k: v * 0.5 for k, v in self._pos.items() if v > 0.25}
            self._m_total *= 0.5
        if len(self._segs) > 4 * self._period:
            self._segs = {}
        self._ops = 0
        self._period = max(MIN_AGE_PERIOD, AGE_FACTOR * len(self._where))

    def score(self, key: str) -> float:
        """Estimated share of requests that will ask for key (higher = keep)."""
        g = self._segment(key)
        if g is None:
            return self._freq.get(key, 0) / self._f_total if self._f_total else 0.0
        return self._model(key, g) + self._follower(g[4], g[5])

    def _model(self, key: str, g: _Seg) -> float:
        """A segment's steady rate: its own count blended with the VOD model's estimate."""
        f = self._freq.get(key, 0) / self._f_total if self._f_total else 0.0
        title, rend, b, width, _, _ = g
        at_pos = self._pos.get(b, 0.0)
        if not at_pos:
            return f
        est = (self._title_pos.get((title, b), 0.0) * self._rend_pos.get((rend, b), 0.0)
               / (width * at_pos * self._m_total))
        return MIX * est + (1.0 - MIX) * f

    # -- viewers on their way --------------------------------------------------------------
    def _seen(self, stream: tuple[str, str], seg: int) -> None:
        """Note a viewer at seg of stream; learn the usual gap between his requests."""
        last = self._last.get(stream)
        if last is None:
            last = self._last[stream] = {}
        prev = last.get(seg - 1)
        if prev is not None and seg > 3 and last.get(seg, -1) < prev:
            gap = self._clock - prev
            if gap < 4 * self._gap or self._gaps < 8:
                self._gaps += 1  # a plain mean of the first samples, then a moving average
                self._gap += (gap - self._gap) * max(GAP_EWMA, 1 / self._gaps)
        t = last.get(seg, -1)
        if self._before_at != (stream, seg) or self._clock - t > 0.25 * self._gap:
            # for the door: when seg was asked for before this viewer (his other chunks of
            # the same segment do not count)
            self._before, self._before_at = t, (stream, seg)
        last[seg] = self._clock

    def _follower(self, stream: tuple[str, str], seg: int, t_seg: int | None = None,
                  margin: float = -FOLLOW_SLACK) -> float:
        """Share of requests a viewer behind seg, seen since seg was last asked for and not
        yet due, adds: he asks for it in about d requests (Belady: keep what is needed soonest)."""
        last = self._last.get(stream)
        if last is None:
            return 0.0
        if t_seg is None:
            t_seg = last.get(seg, -1)
        gap, now = self._gap, self._clock
        for j in range(1, min(self._back, seg) + 1):
            t = last.get(seg - j)
            if t is not None and t > t_seg:
                d = j * gap - (now - t)
                if d > margin * gap:
                    return FOLLOW_P / max(d, 0.25 * gap)
        return 0.0

    def _prune(self) -> None:
        """Forget viewer positions older than the look-back can use, and never keep more
        requests' worth than the frequency table does (memory bounded by capacity)."""
        held = self.capacity / max(1.0, self._seg_bytes * self._gap)  # gaps the cache holds
        self._back = min(FOLLOW_BACK_MAX, int(FOLLOW_BACK_BASE + FOLLOW_BACK_SLOPE * held))
        span = min(int((self._back + 2) * self._gap), self._period)
        horizon = self._clock - span
        self._last = {
            s: kept for s, last in self._last.items()
            if (kept := {seg: t for seg, t in last.items() if t > horizon})
        }
        self._prune_at = self._clock + max(MIN_AGE_PERIOD, span // 2)

    # -- admission -------------------------------------------------------------------------
    def admit(self, key: str, size: int) -> bool:
        """VOD segments, and objects too big for the window, duel at the door; the rest
        enter the window and duel when they leave it."""
        if size > self.capacity:
            return False
        need = self.used + size - self.capacity
        if need <= 0 or (size <= self._window_cap and self._segment(key) is None):
            return True
        return self._door(key, need)

    def door_score(self, key: str) -> float:
        """score() of a key asked for just now, as the door sees it: the viewers behind it
        as they were before this request, and only those well short of their ETA (the
        requester's own trail is one gap per segment behind him)."""
        g = self._segment(key)
        if g is None:
            return self.score(key)
        before = self._before if key == self._last_key else None
        return self._model(key, g) + self._follower(g[4], g[5], before, DOOR_MARGIN)

    def _door(self, key: str, need: int) -> bool:
        """Admit key only if it out-scores every object it would displace (need bytes)."""
        mine = self.door_score(key)
        for theirs, _, size in self._sorted_sample():
            if theirs >= mine:
                return False
            need -= size
            if need <= 0:
                return True
        for k, size in itertools.chain(self._protected.items(), self._window.items()):
            if self.score(k) >= mine:
                return False
            need -= size
            if need <= 0:
                return True
        return True  # only pinned content left to give

    def victims(self, bytes_needed: int) -> list[str]:
        # The caller makes room *before* insert; a newcomer bound for the window will push
        # the window's oldest entry into its duel now, so count it in.
        if self._segs.get(self._last_key) is None:
            self._incoming = max(0, bytes_needed + self.capacity - self.used)
        try:
            return super().victims(bytes_needed)
        finally:
            self._incoming = 0

    # -- hooks -----------------------------------------------------------------------------
    def _touch(self, key: str, size: int) -> bool:
        self._record(key)
        self._last_key = key
        if self._segs.get(key) is not None:
            self._seg_bytes += (size - self._seg_bytes) * GAP_EWMA
        where = self._where.get(key)
        if where is None:
            return False
        if where == _PROBATION:
            self._promote(key)
        elif where == _PROTECTED:
            self._protected.move_to_end(key)
        else:
            self._window.move_to_end(key)
        return True

    def _promote(self, key: str) -> None:
        self._unsample(key)
        s = self._probation.pop(key)
        self._probation_used -= s
        self._protected[key] = s
        self._protected_used += s
        self._where[key] = _PROTECTED
        share = PROTECTED_RATIO if self._segs.get(key) is None else PROTECTED_RATIO_VOD
        cap = int((self.capacity - self._window_used) * share)
        while self._protected_used > cap and len(self._protected) > 1:
            k, ds = self._protected.popitem(last=False)
            self._protected_used -= ds
            self._probation[k] = ds
            self._probation_used += ds
            self._where[k] = _PROBATION

    def _attach(self, key: str, size: int) -> None:
        if self._segment(key) is not None:
            self._to_probation(key, size)
        else:
            self._window[key] = size
            self._window_used += size
            self._where[key] = _WINDOW
            self._spill()

    def _to_probation(self, key: str, size: int) -> None:
        """key joins probation's new end; while probation is smaller than the sample, it
        joins the sample too (in its place by score: no rebuild)."""
        if len(self._probation) < SAMPLE_MIN and self._sample:
            bisect.insort(self._sample, (self.score(key), key, size))
            self._sampled.add(key)
        self._probation[key] = size
        self._probation_used += size
        self._where[key] = _PROBATION

    def _spill(self) -> None:
        """Window overflow moves to main while main is under its share (no duel needed)."""
        window = self._window
        room = self.capacity - self._window_cap - self._probation_used - self._protected_used
        while self._window_used > self._window_cap and window:
            cand = next(iter(window))
            csize = window[cand]
            if csize > room:
                return
            window.popitem(last=False)
            self._window_used -= csize
            self._to_probation(cand, csize)
            room -= csize
            if cand == self._cand:
                self._cand = None

    def _detach(self, key: str) -> int | None:
        where = self._where.pop(key, None)
        if where is None:
            return None
        if key == self._cand:
            self._cand = None
        if where == _WINDOW:
            size = self._window.pop(key)
            self._window_used -= size
        elif where == _PROBATION:
            self._unsample(key)
            size = self._probation.pop(key)
            self._probation_used -= size
        else:
            size = self._protected.pop(key)
            self._protected_used -= size
        return size

    def _unsample(self, key: str) -> None:
        """key leaves probation: the rest of the sample stays valid without it."""
        if key in self._sampled:
            self._sampled.discard(key)
            sample = self._sample
            for i, entry in enumerate(sample):
                if entry[1] == key:
                    del sample[i]
                    break

    def _sorted_sample(self) -> list[tuple[float, str, int]]:
        """The oldest SAMPLE probation entries, least popular first (cached, see __init__)."""
        ttl = SAMPLE_TTL
        if self._gaps:  # VOD viewers seen: their followers' ETAs must stay current
            ttl = min(ttl, max(SAMPLE_TTL_MIN, int(self._gap * SAMPLE_TTL_GAP)))
        if self._clock - self._sample_at > ttl or not self._sample:
            score = self.score
            n = min(SAMPLE, max(SAMPLE_MIN, int(len(self._probation) * SAMPLE_SHARE)))
            self._sample = sorted(
                (score(k), k, s) for k, s in itertools.islice(self._probation.items(), n)
            )
            self._sampled = {k for _, k, _ in self._sample}
            self._sample_at = self._clock
        return self._sample

    def _main_victim(self) -> str | None:
        """The least popular of the oldest SAMPLE probation entries (else protected's LRU)."""
        if self._probation:
            return self._sorted_sample()[0][1]
        return next(iter(self._protected), None)

    def _drop(self, key: str) -> tuple[str, int]:
        size = self._detach(key)
        assert size is not None
        return key, size

    def _evict(self) -> tuple[str, int] | None:
        window = self._window
        while self._window_used + self._incoming > self._window_cap and window:
            cand = next(iter(window))
            csize = window[cand]
            if cand != self._cand:
                self._cand, self._cand_won = cand, 0
            main_used = self._probation_used + self._protected_used
            if self._cand_won >= csize or main_used + csize <= self.capacity - self._window_cap:
                # main has room for it, or it has out-scored enough victims: into main
                window.popitem(last=False)
                self._window_used -= csize
                self._to_probation(cand, csize)
                self._cand = None
                continue
            victim = self._main_victim()
            if victim is not None and self.score(cand) > self.score(victim):
                got = self._drop(victim)
                self._cand_won += got[1]
                return got
            return self._drop(cand)
        victim = self._main_victim()
        if victim is None:
            victim = next(iter(window), None)
            if victim is None:
                return None
        return self._drop(victim)

    def _resident(self, key: str) -> bool:
        return key in self._where

    def _count(self) -> int:
        return len(self._where)

    def _check(self) -> int:
        regions = (
            (self._window, _WINDOW, self._window_used),
            (self._probation, _PROBATION, self._probation_used),
            (self._protected, _PROTECTED, self._protected_used),
        )
        total = n = 0
        for od, tag, used in regions:
            assert sum(od.values()) == used, f"region {tag} byte count is stale"
            assert all(self._where.get(k) == tag for k in od), f"region {tag} index is stale"
            total += used
            n += len(od)
        assert n == len(self._where), "index holds keys that no region has"
        assert all(v > 0 for v in self._freq.values()), "a zero counter was kept"
        assert self._cand is None or self._where.get(self._cand) == _WINDOW
        assert self._sampled == {k for _, k, _ in self._sample}, "sample index is stale"
        assert all(self._where.get(k) == _PROBATION for k in self._sampled), "sampled non-probation"
        return total
