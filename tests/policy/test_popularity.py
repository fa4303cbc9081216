"""What the production policy promises beyond the interface: scans and one-hit wonders do
not flush the hot set, big cold objects do not displace many hot ones, and VOD segment keys
are ranked by how viewing works (hot titles, early segments)."""

from __future__ import annotations

from edge.policy import make_policy
from edge.policy.popularity import PopularityPolicy, parse_segment

from .conftest import request


def _warm_then_scan(name: str, interleave: bool) -> tuple[int, int]:
    """100-slot cache, a 60-key hot set, then 5,000 one-hit keys. (hot survivors, hot hits)"""
    p = make_policy(name, 100)
    hot = [f"/hot/{i}" for i in range(60)]
    for _ in range(20):
        for k in hot:
            request(p, k, 1)
    hits = 0
    for i in range(5000):
        request(p, f"/scan/{i}", 1)
        if interleave and i % 10 == 0:
            hits += request(p, hot[(i // 10) % 60], 1)
    p.check()
    return sum(k in p for k in hot), hits


def test_a_scan_of_one_hit_wonders_leaves_the_hot_set_resident() -> None:
    survivors, _ = _warm_then_scan("popularity", interleave=False)
    assert survivors == 60
    lru_survivors, _ = _warm_then_scan("lru", interleave=False)
    assert lru_survivors == 0  # the scan is a real threat


def test_hot_keys_keep_hitting_during_a_scan() -> None:
    _, hits = _warm_then_scan("popularity", interleave=True)
    _, lru_hits = _warm_then_scan("lru", interleave=True)
    assert hits >= 495  # of 500 hot requests
    assert lru_hits < 100


def test_a_big_one_hit_object_does_not_displace_the_hot_set() -> None:
    p = PopularityPolicy(1000)
    hot = [f"/hot/{i}" for i in range(10)]
    for _ in range(5):
        for k in hot:
            request(p, k, 90)
    assert all(k in p for k in hot)
    request(p, "/huge-once", 900)
    assert "/huge-once" not in p
    assert all(k in p for k in hot)
    # ... but a big object that has become popular does get in
    for _ in range(20):
        request(p, "/huge-popular", 400)
    assert "/huge-popular" in p
    p.check()


def test_parse_segment_reads_vod_keys_and_ignores_others() -> None:
    assert parse_segment("/titles/t1/720p/seg_00003.ts#1") == ("t1", "720p", 3, 1)
    t, r, b, w = parse_segment("/titles/t1/720p/seg_00100.ts")  # type: ignore[misc]
    assert (t, r) == ("t1", "720p") and w > 1
    assert parse_segment("/titles/t1/master.m3u8") is None
    assert parse_segment("/titles/t1/720p/index.m3u8#0") is None
    assert parse_segment("/other/seg_00001.ts") is None
    assert parse_segment("42") is None


def _sessions(p: PopularityPolicy, title: str, n: int, watch: list[int]) -> None:
    for i in range(n):
        for seg in range(watch[i % len(watch)]):
            request(p, f"/titles/{title}/720p/seg_{seg:05d}.ts#0", 50)


def test_a_never_seen_segment_of_a_hot_title_outranks_a_cold_one() -> None:
    p = PopularityPolicy(10_000)
    _sessions(p, "hot", 30, [5, 40, 120])
    _sessions(p, "cold", 1, [40])
    fresh_hot = "/titles/hot/720p/seg_00030.ts#1"  # chunk 1 never requested
    fresh_cold = "/titles/cold/720p/seg_00030.ts#1"
    assert p.score(fresh_hot) > p.score(fresh_cold)
    assert p.score(fresh_hot) > p.score("/opaque/requested-once") == 0.0
    p.check()


def test_early_segments_outrank_late_ones_when_viewers_abandon() -> None:
    p = PopularityPolicy(1_000_000)
    _sessions(p, "t", 40, [3, 10, 30, 200])
    s = [p.score(f"/titles/t/720p/seg_{n:05d}.ts#0") for n in (0, 20, 150)]
    assert s[0] > s[1] > s[2] > 0


def test_a_fresh_hot_segment_wins_its_door_duel_and_a_cold_one_loses() -> None:
    p = PopularityPolicy(50 * 40)  # room for 40 chunks of 50 bytes
    for _ in range(3):
        for i in range(40):
            request(p, f"/filler/{i}", 50)  # each requested 3 times
    _sessions(p, "hot", 40, [6])  # misses: the filler is better known...
    assert p.admit("/titles/hot/720p/seg_00003.ts#1", 50)  # ...but the model knows better
    assert not p.admit("/titles/cold/720p/seg_00003.ts#1", 50)
    p.check()


def _play(p: PopularityPolicy, viewers: dict[str, tuple[str, int]], ticks: int) -> None:
    """Viewers in lock step: each tick every viewer asks for its next segment (one chunk).
    viewers: name -> (title, first tick); a viewer starts at segment 0 on its first tick."""
    for tick in range(ticks):
        for title, start in viewers.values():
            if tick >= start:
                request(p, f"/titles/{title}/720p/seg_{tick - start:05d}.ts#0", 50)


def _background(n: int) -> dict[str, tuple[str, int]]:
    return {f"bg{i}": (f"bg{i}", 0) for i in range(n)}


def test_a_segment_with_a_viewer_on_his_way_to_it_outranks_one_without() -> None:
    p = PopularityPolicy(1_000_000)
    # 'pair' has a leader and a viewer 3 segments behind; 'solo' had the same two viewers'
    # worth of requests, but its earlier viewer has long gone past
    viewers = _background(20) | {"lead": ("pair", 12), "follow": ("pair", 15),
                                 "early": ("solo", 0), "late": ("solo", 12)}
    _play(p, viewers, 30)
    pair, solo = "/titles/pair/720p/seg_00016.ts#0", "/titles/solo/720p/seg_00016.ts#0"
    assert pair in p and solo in p
    assert p.score(pair) > 5 * p.score(solo)
    # once the follower has passed it, the segment is back to its steady rate
    _play(p, {"follow": ("pair", -15)}, 4)  # segments 15..18
    assert p.score(pair) < 2 * p.score(solo)
    p.check()


def test_the_learned_gap_is_the_requests_between_a_viewers_segments() -> None:
    p = PopularityPolicy(1_000_000)
    _play(p, _background(40), 60)
    assert 35 <= p._gap <= 45  # 40 viewers in lock step: 40 requests per segment
    p.check()


def test_the_door_counts_a_viewer_on_his_way_but_not_the_requesters_own_trail() -> None:
    p = PopularityPolicy(1_000_000)
    viewers = _background(20) | {"lead": ("pair", 0), "follow": ("pair", 4),
                                 "early": ("solo", -30), "late": ("solo", 0)}
    _play(p, viewers, 12)  # lead and late are at segment 11, follow at 7
    lead, solo = "/titles/pair/720p/seg_00012.ts#0", "/titles/solo/720p/seg_00012.ts#0"
    assert not p.access(solo, 50)
    assert p.door_score(solo) == p.score(solo)  # no one but its requester was behind it
    assert not p.access(lead, 50)
    assert p.door_score(lead) > 3 * p.score(lead)
    p.check()


def test_viewer_positions_are_forgotten_so_memory_stays_bounded() -> None:
    p = PopularityPolicy(10_000)
    for title in range(400):
        _play(p, {"v": (f"t{title}", 0)}, 30)
    assert sum(len(v) for v in p._last.values()) < 30 * 400 // 2
    p.check()


def test_a_bigger_cache_looks_further_back_for_viewers_on_their_way() -> None:
    small, big = PopularityPolicy(50 * 40), PopularityPolicy(50 * 4000)
    for p in (small, big):
        _play(p, _background(40), 120)  # 4,800 requests: the look-back is set at a prune
        p.check()
    # the small cache holds one segment gap of traffic (40 chunks), the big one a hundred
    assert small._back == 9
    assert big._back == 32
