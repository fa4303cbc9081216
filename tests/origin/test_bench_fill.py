"""`edgecdn bench fill`: the issue's first fill measure over real HTTP, as the CLI runs it
(its own moto server, `fill plan`, a filled and a cold `edgecdn edge` process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.fill_measure import budget_for, is_hit

ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_filled_edge_hits_85_percent_of_bytes_from_the_first_request_and_beats_cold() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out = subprocess.run(
        [sys.executable, "-m", "edgecdn.cli", "bench", "fill", "--json", "--sessions", "800",
         "--log-sessions", "20000", "--segment-size", "8KiB-24KiB"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    warm, cold, fill = r["warm"], r["cold"], r["fill"]
    print(f"budget {r['budget_bytes']} B, fill {fill}, warm {warm}, cold {cold}")
    assert warm["errors"] == cold["errors"] == 0
    assert warm["requests"] == cold["requests"] == r["workload"]["requests"]
    assert fill["state"] == "complete" and 0 < fill["bytes"] <= r["budget_bytes"]
    assert fill["bytes_by_source"]["origin"] == fill["bytes"]  # one edge: no peer to ask
    assert warm["byte_hit_ratio"] >= 0.85
    assert warm["first_10pct"]["byte_hit_ratio"] >= 0.85
    assert warm["byte_hit_ratio"] > cold["byte_hit_ratio"]
    assert warm["first_10pct"]["byte_hit_ratio"] > cold["first_10pct"]["byte_hit_ratio"]
    assert _gone(warm["pid"]) and _gone(cold["pid"])  # both edge processes were stopped


def test_bad_arguments_exit_2_with_a_reason() -> None:
    for args in (["--segment-size", "big"], ["--sessions", "0"], ["--share", "1.5"]):
        out = subprocess.run([sys.executable, "-m", "edgecdn.cli", "bench", "fill", *args],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert out.returncode == 2 and "edgecdn bench fill" in out.stderr, (args, out.stderr)


def test_budget_holds_the_most_requested_objects_up_to_the_share() -> None:
    sizes = {"/a": 100, "/b": 50, "/c": 10}
    reqs = ["/a"] * 8 + ["/b"] * 3 + ["/c"]  # bytes 800 + 150 + 10
    assert budget_for(reqs, sizes, 0.8) == 100
    assert budget_for(reqs, sizes, 0.9) == 150
    assert budget_for(reqs, sizes, 1.0) == 160


def test_cache_status_hit_is_a_hit_without_fwd() -> None:
    assert is_hit("edgecdn; hit") and is_hit("edgecdn; hit; ttl=12")
    assert not is_hit("edgecdn; fwd=miss; stored")
    assert not is_hit("edgecdn; fwd=miss; collapsed") and not is_hit("")
