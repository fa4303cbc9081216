"""The player harness against aiohttp stand-ins: failover, checksums, determinism."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench.faults import FaultAction
from bench.player import (
    ClientPrefix,
    PlaybackBuffer,
    Workload,
    choose_variant,
    plan_session,
)
from bench.player_checksums import OriginChecksums
from bench.player_hls import Variant, parse_master, parse_media, resolve
from bench.players import bench_table, build_settings, run_players
from bench.playerstats import parse_cache_status, without_timing
from contracts.fleet import load_fleet
from tests.bench_players.conftest import write_fleet
from tests.bench_players.standins import (
    EdgeBehaviour,
    ServerThread,
    StandinEdge,
    StandinSteering,
    library,
)

SITES = {"e1": ("s1", "r1"), "e2": ("s1", "r1"), "e3": ("s2", "r2")}


def start_fleet(servers: ServerThread, tmp_path: Path, content: dict[str, bytes],
                behaviours: dict[str, EdgeBehaviour] | None = None,
                order: tuple[str, ...] = ("e1", "e2", "e3"), bench: str = "",
                ) -> tuple[Path, dict[str, StandinEdge], StandinSteering]:
    edges: dict[str, StandinEdge] = {}
    urls: dict[str, tuple[str, str, str]] = {}
    for name, (site, region) in SITES.items():
        edges[name] = StandinEdge(name, content, (behaviours or {}).get(name))
        urls[name] = (servers.serve(edges[name].app()), site, region)
    steering = StandinSteering(urls, list(order))
    steer_url = servers.serve(steering.app())
    titles = tuple(sorted({p.split("/")[2] for p in content}))
    fleet = write_fleet(tmp_path / "fleet.toml", urls, steer_url, bench, titles)
    return fleet, edges, steering


def run_harness(fleet_path: Path, content: dict[str, bytes],
                faults: list[FaultAction] | None = None, **flags: Any) -> dict[str, Any]:
    fleet = load_fleet(fleet_path)
    s = build_settings(fleet, bench_table(fleet, None, flags), [], faults or [])
    s.pids = flags.get("pids") or {}
    return asyncio.run(run_players(s, OriginChecksums.from_bodies(content)))


FAST = {"players": 4, "duration": 20.0, "speed": 50.0, "sessions": 2, "seed": 7}


def test_all_plays_served_from_first_url_when_it_is_healthy(servers, tmp_path):
    content = library()
    fleet, edges, steering = start_fleet(servers, tmp_path, content)
    rep = run_harness(fleet, content, **FAST)
    assert rep["plays"]["sessions"] == 8 and rep["plays"]["failed"] == 0
    assert set(rep["sources"]) == {"e1"}
    assert rep["requests"]["failovers"] == 0
    assert rep["segments"]["corrupt"] == 0
    assert rep["segments"]["verified"] == rep["segments"]["played"] > 0
    assert sum(edges["e2"].requests.values()) == 0
    # client addresses come from the configured prefixes
    assert steering.client_ips and all(
        ip.startswith("10.1.") or ip.startswith("2001:db8:") for ip in steering.client_ips)
    # second request of a path at e1 is a hit: object hit ratio = 1 - unique/total
    total = sum(edges["e1"].requests.values())
    assert rep["hit_ratio"]["object"] == round(1 - len(edges["e1"].seen) / total, 4)


def test_failover_goes_to_the_next_url_in_order(servers, tmp_path):
    content = library()
    fleet, edges, _ = start_fleet(servers, tmp_path, content,
                                  {"e1": EdgeBehaviour(fail_status=503)})
    rep = run_harness(fleet, content, **FAST)
    assert rep["plays"]["failed"] == 0
    assert rep["sources"]["e1"]["bytes"] == 0 and rep["sources"]["e1"]["errors"] > 0
    assert rep["sources"]["e2"]["bytes"] > 0
    assert "e3" not in rep["sources"]  # e2 (second URL) took over, not e3
    assert sum(edges["e3"].requests.values()) == 0
    assert rep["requests"]["failovers"] >= 1


def test_a_hanging_edge_times_out_and_fails_over(servers, tmp_path):
    content = library(segments=2)
    fleet, edges, _ = start_fleet(servers, tmp_path, content, {"e1": EdgeBehaviour(hang=True)},
                                  bench="request_timeout = 0.3")
    rep = run_harness(fleet, content, players=2, duration=20, speed=50, sessions=1)
    assert rep["plays"]["failed"] == 0
    assert rep["sources"]["e1"]["errors"] >= 1
    assert rep["sources"]["e2"]["segments"] > 0


def test_every_url_failing_fails_the_play(servers, tmp_path):
    content = library(segments=2)
    bad = EdgeBehaviour(fail_status=502)
    fleet, _, _ = start_fleet(servers, tmp_path, content, {"e1": bad, "e2": bad, "e3": bad})
    rep = run_harness(fleet, content, players=1, duration=10, speed=50, sessions=1)
    assert rep["plays"]["failed"] == 1
    assert rep["plays"]["failed_reasons"] == {"all URLs failed for master": 1}
    assert rep["requests"]["resteers"] == 1


def test_checksum_catches_a_flipped_byte_and_the_player_moves_on(servers, tmp_path):
    content = library(titles=("t1",), segments=3)
    bad = {"/titles/t1/low/seg_00001.ts", "/titles/t1/high/seg_00001.ts"}  # whichever ABR picks
    fleet, _, _ = start_fleet(servers, tmp_path, content,
                              {"e1": EdgeBehaviour(corrupt=bad)}, bench="abandon_p = 0.0")
    rep = run_harness(fleet, content, players=1, duration=20, speed=50, sessions=1, seed=1)
    assert rep["segments"]["corrupt"] == 1
    assert rep["plays"]["failed"] == 0  # the player took the segment from the next URL
    assert rep["sources"]["e2"]["segments"] >= 1


def test_a_short_segment_is_caught(servers, tmp_path):
    content = library(titles=("t1",), segments=2)
    fleet, _, _ = start_fleet(servers, tmp_path, content,
                              {"e1": EdgeBehaviour(truncate={"/titles/t1/low/seg_00000.ts",
                                                             "/titles/t1/high/seg_00000.ts"})},
                              bench="abandon_p = 0.0")
    rep = run_harness(fleet, content, players=1, duration=20, speed=50, sessions=1)
    assert rep["segments"]["short"] == 1


ONE_RENDITION = (("only", 800_000, 30_000),)  # ABR choices follow timing; keep them out


def test_same_seed_same_report_apart_from_timing(servers, tmp_path):
    content = library(renditions=ONE_RENDITION)
    fleet, _, _ = start_fleet(servers, tmp_path, content)
    a = run_harness(fleet, content, **FAST)
    # a fresh fleet, so the edges' hit/miss state starts the same way
    (tmp_path / "b").mkdir()
    fleet2, _, _ = start_fleet(servers, tmp_path / "b", content)
    b = run_harness(fleet2, content, **FAST)
    da, db = without_timing(a), without_timing(b)
    da["run"].pop("steering_url"), db["run"].pop("steering_url")
    da["run"].pop("fleet"), db["run"].pop("fleet")
    assert da == db
    c = run_harness(fleet2, content, **(FAST | {"seed": 8}))
    assert c["sessions_detail"] != a["sessions_detail"]


def test_plan_is_a_pure_function_of_seed_and_zipf_favours_rank_one():
    w = Workload((ClientPrefix("10.0.0.0/8"), ClientPrefix("2001:db8::/64")),
                 ("a", "b", "c", "d"), zipf_s=1.2)
    plans = [plan_session(3, p, i, w) for p in range(200) for i in range(5)]
    assert plans == [plan_session(3, p, i, w) for p in range(200) for i in range(5)]
    counts = {t: sum(1 for x in plans if x.title == t) for t in w.titles}
    assert counts["a"] > counts["b"] > counts["d"]
    assert 0.3 < sum(x.abandon for x in plans) / len(plans) < 0.5
    assert all(1 <= x.watch_segments(10) <= 10 for x in plans)


def test_playback_buffer_counts_stalls_and_their_time():
    b = PlaybackBuffer(speed=1.0)
    b.add(0.0, 4.0)  # playing, 4 s buffered
    b.add(2.0, 4.0)  # 2 s played, 6 s left
    assert b.level == 6.0 and b.rebuffers == 0
    b.add(10.0, 4.0)  # dry at t=8, stalled 2 s
    assert b.rebuffers == 1 and abs(b.rebuffer_time - 2.0) < 1e-9 and b.level == 4.0
    assert b.wait_for_room(10.0, 1.0) == 3.0


def test_abr_picks_the_highest_rendition_under_safety_and_holds_on_thin_buffer():
    v = [Variant("l", 300_000), Variant("m", 1_000_000), Variant("h", 3_000_000)]
    assert choose_variant(v, None, 0, 0) == 0
    assert choose_variant(v, 2_000_000, 20, 0) == 1
    assert choose_variant(v, 10_000_000, 20, 0) == 2
    assert choose_variant(v, 10_000_000, 2, 0) == 0  # would step up, buffer too thin
    assert choose_variant(v, 500_000, 2, 2) == 0  # steps down at once


def test_hls_parsing_and_resolution():
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=900,CODECS=\"a,b\"\nhi/index.m3u8\n" \
             "#EXT-X-STREAM-INF:BANDWIDTH=100\nlo/index.m3u8\n"
    assert [x.uri for x in parse_master(master)] == ["lo/index.m3u8", "hi/index.m3u8"]
    segs = parse_media("#EXTM3U\n#EXTINF:4.0,\nseg_1.ts\n#EXTINF:2.5,\nseg_2.ts\n")
    assert [(s.uri, s.duration) for s in segs] == [("seg_1.ts", 4.0), ("seg_2.ts", 2.5)]
    assert resolve("/titles/t/master.m3u8", "lo/index.m3u8") == "/titles/t/lo/index.m3u8"
    assert resolve("/titles/t/lo/index.m3u8", "../x.ts") == "/titles/t/x.ts"


def test_cache_status_parsing():
    assert parse_cache_status("edgecdn; hit") == "hit"
    assert parse_cache_status("edgecdn; fwd=miss; stored") == "miss"
    assert parse_cache_status("edgecdn; fwd=stale; collapsed") == "miss"
    assert parse_cache_status(None) == ""


def test_players_split_over_processes_give_the_same_report(servers, tmp_path):
    from bench.players_procs import run_multi

    content = library(renditions=ONE_RENDITION)
    fleet, _, _ = start_fleet(servers, tmp_path, content)
    one = run_harness(fleet, content, **FAST)
    (tmp_path / "b").mkdir()
    fleet2, edges2, _ = start_fleet(servers, tmp_path / "b", content)
    f = load_fleet(fleet2)
    s = build_settings(f, bench_table(f, None, FAST | {"procs": 2}), [], [])
    two = run_multi(s, OriginChecksums.from_bodies(content), asyncio.run)
    assert two["run"]["procs"] == 2
    da, db = without_timing(one), without_timing(two)
    for d in (da, db):
        for k in ("steering_url", "fleet", "procs"):
            d["run"].pop(k)
    assert da == db
