"""The trace simulator: parsing, capacities, and the reference policies against the figures
published with the shared traces (libCacheSim's LRU / SIEVE / S3-FIFO)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.trace import TraceError, parse_trace, read_trace, resolve_capacity, run
from bench.workloads import VodConfig, vod_requests, vod_trace, write_vod_csv
from contracts.keys import ContentKey

TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"


def test_parse_trace_counts_unique_objects_and_bytes() -> None:
    t = parse_trace(["0,a,10", "1,b,5", "", "2,a,10", "3,b,5"])
    assert (len(t), t.unique_objects, t.unique_bytes, t.total_bytes) == (4, 2, 15, 30)


def test_a_key_with_a_new_size_is_a_new_object() -> None:
    t = parse_trace(["0,7,100", "1,7,200", "2,7,100", "3,7,200"])
    assert t.keys == ["7", "7~200", "7", "7~200"]
    assert (t.unique_objects, t.unique_bytes) == (2, 300)


def test_keys_may_contain_commas() -> None:
    t = parse_trace(["0.5,/a,b,c,42"])
    assert t.keys == ["/a,b,c"] and t.sizes == [42]


@pytest.mark.parametrize("line", ["nonsense", "0,k", "x,k,1", "0,k,ten", "0,k,-1"])
def test_malformed_lines_are_refused_with_their_number(line: str) -> None:
    with pytest.raises(TraceError, match=r"t:2:"):
        parse_trace(["0,ok,1", line], name="t")


def test_capacity_is_a_percentage_of_unique_bytes_or_a_size() -> None:
    assert resolve_capacity("10%", 20_000) == 2_000
    assert resolve_capacity("0.5%", 1_000) == 5
    assert resolve_capacity("2MiB", 1) == 2 * 1024 * 1024
    for bad in ("0%", "150%", "x%", "-1", "0", "lots"):
        with pytest.raises(ValueError):
            resolve_capacity(bad, 1000)


def test_every_policy_gets_the_whole_trace_and_lru_matches_a_hand_count() -> None:
    t = parse_trace([f"{i},{k},1" for i, k in enumerate("abcabdab")])
    res = {r.policy: r for r in run(t, ["lru", "sieve", "s3fifo", "popularity"], [2])}
    assert all(r.requests == 8 and r.bytes_requested == 8 for r in res.values())
    # LRU with 2 slots over a b c a b d a b: every request misses
    assert res["lru"].hits == 0 and res["lru"].object_miss_ratio == 1.0
    t2 = parse_trace([f"{i},{k},1" for i, k in enumerate("abab")])
    assert [r.hits for r in run(t2, ["lru"], [2])] == [2]


@pytest.mark.parametrize(
    ("trace", "pct", "expected"),
    [
        # README reference figures: byte miss ratio LRU / SIEVE / S3-FIFO
        ("adaptsize_request", 0.1, (0.860, 0.831, 0.935)),
        ("adaptsize_request", 1, (0.755, 0.742, 0.754)),
        ("cache2k_web07", 1, (0.609, 0.577, 0.562)),
        ("cache2k_web07", 10, (0.443, 0.421, 0.419)),
    ],
)
def test_reference_policies_match_the_published_figures(trace: str, pct: float, expected) -> None:
    t = read_trace(TRACES / f"{trace}.csv")
    cap = resolve_capacity(f"{pct}%", t.unique_bytes)
    res = run(t, ["lru", "sieve", "s3fifo"], [cap])
    got = tuple(r.byte_miss_ratio for r in res)
    assert got == pytest.approx(expected, abs=0.0025)


def test_the_vod_workload_is_seeded_and_shaped_like_video(tmp_path: Path) -> None:
    cfg = VodConfig(seed=3, requests=5000, titles=50)
    a, b = vod_trace(cfg), vod_trace(cfg)
    assert a.keys == b.keys and a.sizes == b.sizes
    assert vod_trace(VodConfig(seed=4, requests=5000, titles=50)).keys != a.keys
    segs = [ContentKey.parse(k) for k in a.keys if k.endswith(".ts")]
    assert len(segs) > 0.75 * len(a)  # the rest: master and media playlists
    assert {s.rendition for s in segs} >= {"240p", "720p", "1080p"}
    # sessions start at segment 0 and abandon: segment 0 is the most requested position
    by_pos: dict[int, int] = {}
    for s in segs:
        by_pos[s.segment] = by_pos.get(s.segment, 0) + 1  # type: ignore[index]
    assert by_pos[0] >= max(by_pos.values()) * 0.9
    assert by_pos[0] > 3 * by_pos.get(100, 0)
    # a key keeps its size; 1080p segments are bigger than 240p ones
    size: dict[str, int] = {}
    for k, s in zip(a.keys, a.sizes, strict=True):
        assert size.setdefault(k, s) == s
    big = [s for k, s in size.items() if "/1080p/seg_" in k]
    small = [s for k, s in size.items() if "/240p/seg_" in k]
    assert min(big) > max(small)
    # times never go backwards; the CSV round-trips through the trace reader
    times = [t for t, _, _ in vod_requests(cfg)]
    assert times == sorted(times)
    out = tmp_path / "vod.csv"
    assert write_vod_csv(out, cfg) == 5000
    back = read_trace(out)
    assert back.keys == a.keys and back.sizes == a.sizes


@pytest.mark.parametrize(("pct", "margin"), [("1%", 0.015), ("10%", 0.03)])
def test_popularity_leads_the_references_on_another_vod_seed(pct: str, margin: float) -> None:
    """Not tuned on this seed: viewers on their way are worth points of byte miss ratio."""
    t = vod_trace(VodConfig(seed=2, requests=60_000))
    cap = resolve_capacity(pct, t.unique_bytes)
    res = run(t, ["lru", "sieve", "s3fifo", "popularity"], [cap])
    got = {r.policy: r.byte_miss_ratio for r in res}
    best = min(got[p] for p in ("lru", "sieve", "s3fifo"))
    assert got["popularity"] <= best - margin, got
