"""A short run of the whole demo: real moto, ffmpeg packaging, ingest, 8 edges + steering,
fill, players, an edge killed and a region evacuated; nothing left running afterwards."""

from __future__ import annotations

import matplotlib.image

from bench.demo import DemoOptions, run_demo
from tests.bench_players.test_demo_parts import _gone


def test_short_demo_has_no_failed_plays_or_corrupt_segments_and_cleans_up(tmp_path):
    lines: list[str] = []
    o = DemoOptions(players=12, duration=10.0, titles=1, title_seconds=8, seed=3,
                    workdir=tmp_path / "w", out=tmp_path / "out", progress=False)
    rep = run_demo(o, lines.append)
    text = "\n".join(lines)
    assert rep["plays"]["failed"] == 0, text
    assert rep["segments"]["corrupt"] == 0 and rep["segments"]["short"] == 0
    assert rep["segments"]["verified"] == rep["segments"]["played"] > 0
    assert [(f["what"], f["ok"]) for f in rep["faults"]] == [
        ("kill nyc-1", True), ("evacuate eu-west", True)], text
    assert "PNG report" in text and "traffic by region" in text
    assert matplotlib.image.imread(tmp_path / "out" / "players.png").ndim == 3
    # every process the demo started (moto, fault proxy, 9 edges, steering) is gone
    pids = rep["demo"]["pids"]
    assert len(pids) == 12
    assert all(_gone(pid) for pid in pids.values()), pids
