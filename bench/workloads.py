"""A synthetic video-on-demand request workload, seeded and reproducible.

What makes VOD caching different from web caching, and what this generator reproduces:
- title popularity is Zipf-like (a few titles take most sessions);
- every title has an ABR ladder of renditions with very different segment sizes
  (240p ~200 KB per 4 s segment, 1080p ~2.5 MB), and sizes vary segment to segment;
- a session fetches the master and media playlists, starts at segment 0 at a low rendition and
  climbs to what its bandwidth allows (with the odd dip), then plays in real time;
- sessions abandon early: many viewers sample a title for a minute or two, others leave
  part-way, a minority watch to the end.  So segment 0 of a title is requested far more often
  than segment 900.

Keys look like ``/titles/t0042/720p/seg_00012.ts`` (contracts.keys.ContentKey parses them).
"""

from __future__ import annotations

import csv
import heapq
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.trace import Trace

# (name, bits per second): a typical H.264 ladder.
LADDER: tuple[tuple[str, int], ...] = (
    ("240p", 400_000),
    ("360p", 800_000),
    ("480p", 1_400_000),
    ("720p", 2_800_000),
    ("1080p", 5_000_000),
)
# share of sessions whose bandwidth sustains each rung as the top one
TOP_RUNG_SHARE = (0.05, 0.10, 0.20, 0.35, 0.30)


@dataclass(frozen=True)
class VodConfig:
    seed: int = 1
    requests: int = 300_000
    titles: int = 600
    zipf_alpha: float = 0.9
    sessions_per_second: float = 2.0
    segment_seconds: float = 4.0
    # watch behaviour: P(sample for ~Exp(sample_mean_s)), P(leave at a uniform point), else finish
    p_sample: float = 0.40
    sample_mean_s: float = 120.0
    p_partial: float = 0.40
    p_dip: float = 0.01  # chance per segment of a bandwidth dip (one rung down for a while)


def _title_minutes(rng: random.Random) -> float:
    """Clips, episodes and films."""
    r = rng.random()
    if r < 0.2:
        return rng.uniform(3, 15)
    if r < 0.6:
        return rng.uniform(22, 50)
    return rng.uniform(80, 140)


def _segment_size(bps: int, seconds: float, title: int, rung: int, seg: int) -> int:
    """Stable per key (+-30% around the nominal size), from a cheap integer hash."""
    h = (title * 1_000_003 + rung * 7_919 + seg * 104_729 + 12_345) * 2_654_435_761 % 2**32
    jitter = 0.7 + 0.6 * h / 2**32
    return max(1, int(bps * seconds / 8 * jitter))


def _watch_seconds(cfg: VodConfig, rng: random.Random, duration_s: float) -> float:
    r = rng.random()
    if r < cfg.p_sample:
        return min(duration_s, rng.expovariate(1.0 / cfg.sample_mean_s))
    if r < cfg.p_sample + cfg.p_partial:
        return duration_s * rng.random()
    return duration_s


def vod_requests(cfg: VodConfig) -> Iterator[tuple[float, str, int]]:
    """(time, key, size) in time order, cfg.requests of them."""
    rng = random.Random(cfg.seed)
    seg_s = cfg.segment_seconds
    n_segments = [max(1, int(_title_minutes(rng) * 60 / seg_s)) for _ in range(cfg.titles)]
    order = list(range(cfg.titles))
    rng.shuffle(order)  # popularity rank is not title number
    weights = list(
        itertools.accumulate(1.0 / (rank + 1) ** cfg.zipf_alpha for rank in range(cfg.titles))
    )
    rungs = len(LADDER)
    top_cum = list(itertools.accumulate(TOP_RUNG_SHARE))
    names = [f"t{t:04d}" for t in range(cfg.titles)]

    # heap of (time, seq, session state); a session is [title, top, rung, seg, last, dip_left, seen]
    heap: list[tuple[float, int, list[int]]] = []
    seq = itertools.count()
    next_arrival = 0.0
    emitted = 0
    while emitted < cfg.requests:
        if not heap or next_arrival <= heap[0][0]:
            now = next_arrival
            next_arrival += rng.expovariate(cfg.sessions_per_second)
            title = order[rng.choices(range(cfg.titles), cum_weights=weights)[0]]
            top = rng.choices(range(rungs), cum_weights=top_cum)[0]
            watch = _watch_seconds(cfg, rng, n_segments[title] * seg_s)
            last = min(n_segments[title] - 1, int(watch / seg_s))
            yield now, f"/titles/{names[title]}/master.m3u8", 1_200 + 40 * rungs
            emitted += 1
            start = max(0, top - 2)  # ABR starts low and climbs
            heapq.heappush(heap, (now, next(seq), [title, top, start, 0, last, 0, 0]))
            continue
        now, _, s = heapq.heappop(heap)
        title, top, rung, seg, last, dip_left, seen = s
        if not seen >> rung & 1:  # first use of this rendition: its media playlist
            s[6] = seen | 1 << rung
            name = LADDER[rung][0]
            yield now, f"/titles/{names[title]}/{name}/index.m3u8", 60 * n_segments[title] + 200
            emitted += 1
            if emitted >= cfg.requests:
                return
        name, bps = LADDER[rung]
        size = _segment_size(bps, seg_s, title, rung, seg)
        yield now, f"/titles/{names[title]}/{name}/seg_{seg:05d}.ts", size
        emitted += 1
        if seg >= last:
            continue
        # next rendition: climb to the top, dip now and then
        if dip_left > 0:
            dip_left -= 1
        elif rng.random() < cfg.p_dip:
            dip_left = rng.randint(2, 8)
        target = max(0, top - 1) if dip_left else top
        rung = rung + 1 if rung < target else (rung - 1 if rung > target else rung)
        s[2], s[3], s[5] = rung, seg + 1, dip_left
        # the player fills a 3-segment buffer at once, then plays in real time
        delay = 0.3 if seg < 3 else seg_s
        heapq.heappush(heap, (now + delay, next(seq), s))


def vod_trace(cfg: VodConfig) -> Trace:
    keys: list[str] = []
    sizes: list[int] = []
    objects: dict[str, int] = {}
    for _, key, size in vod_requests(cfg):
        keys.append(key)
        sizes.append(size)
        objects[key] = size
    return Trace(f"vod-seed{cfg.seed}", keys, sizes, len(objects), sum(objects.values()))


def write_vod_csv(path: str | Path, cfg: VodConfig) -> int:
    """Write the workload as a ``time,key,size`` trace; returns the number of lines."""
    n = 0
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        for t, key, size in vod_requests(cfg):
            w.writerow((f"{t:.3f}", key, size))
            n += 1
    return n
