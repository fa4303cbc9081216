"""A short real run of ``edgecdn bench serve``: origin, reference servers, wrk, /proc CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import serve as sv
from bench import serve_servers as srv
from bench.serve_origin import SizeClass

ROOT = Path(__file__).resolve().parents[2]


def test_cli_run_against_reference_servers_reports_every_figure(tmp_path: Path) -> None:
    png = tmp_path / "serve.png"
    p = subprocess.run(
        [sys.executable, "-m", "edgecdn.cli", "bench", "serve", "--servers", "ref,ref-sendfile",
         "--baseline", "ref", "--rounds", "2", "--duration", "1", "--warmup", "0",
         "--connections", "4", "--segment-size", "256KiB", "--segments", "4",
         "--object-size", "16KiB", "--objects", "8", "--json", "--plot", str(png)],
        capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    results = {(r["server"], r["size_class"]): r for r in rep["results"]}
    assert set(results) == {(s, c) for s in ("ref", "ref-sendfile") for c in ("segment", "object")}
    for r in results.values():
        assert r["req_per_s"] > 100 and r["gb_per_s"] > 0 and r["p99_ms"] > 0
        assert r["cpu_s_per_gb"] > 0 and r["cpu_s_per_10k_req"] > 0
        # the split of that CPU (tick-sampled) adds up to about the exact total, and a server
        # that waits for its next request blocks between them
        split_us = r["user_us_per_req"] + r["sys_us_per_req"]
        assert 0.5 < split_us / (r["cpu_s_per_10k_req"] * 100) < 1.5, r
        assert r["blocks_per_req"] > 0 and r["preempted_per_req"] >= 0
    for (_, c), r in results.items():  # wrk read whole bodies plus a header each
        assert r["wire_bytes_per_req"] > {"segment": 256 * 1024, "object": 16 * 1024}[c]
    assert len(rep["samples"]) == 2 * 2 * 2
    assert {s["round"] for s in rep["samples"]} == {0, 1}
    assert all(s["errors"] == 0 for s in rep["samples"])
    seg = rep["ratios"]["ref-sendfile/ref"]["segment"]
    assert seg["req_per_s"] == pytest.approx(
        results[("ref-sendfile", "segment")]["req_per_s"] / results[("ref", "segment")]["req_per_s"])
    rounds = rep["paired_ratios_per_round"]["ref-sendfile/ref"]["object"]["cpu_s_per_10k_req"]
    assert len(rounds) == 2 and all(r > 0 for r in rounds)
    assert [t["ok"] for t in rep["targets"]] == [None, None, None]  # no edgecdn/nginx here
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_warm_fails_when_the_server_never_reports_a_hit(tmp_path: Path) -> None:
    # the origin itself serves the right bytes but has no cache status: not a hit
    sc = SizeClass("object", 1024, 2)
    from bench.serve_origin import write_tree

    write_tree(tmp_path, [sc])
    r = srv.start_origin(tmp_path, tmp_path / "origin.log")
    r.peer = srv.Peer("origin", "ref")  # judged like a cache that speaks Cache-Status
    try:
        with pytest.raises(sv.BenchError, match="never reported a hit"):
            sv.warm(r, [sc], attempts=2)
    finally:
        srv.stop(r)


def test_missing_wrk_or_nginx_names_make_bench_deps(tmp_path: Path) -> None:
    cfg = sv.BenchConfig(servers=["nginx", "ref"])
    with pytest.raises(sv.BenchError, match=r"wrk not found.*make bench-deps"):
        sv.check_deps(cfg, path=str(tmp_path))
    fake = tmp_path / "wrk"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    with pytest.raises(sv.BenchError, match=r"nginx not found.*make bench-deps"):
        sv.check_deps(cfg, path=str(tmp_path))
    plan = sv.check_deps(sv.BenchConfig(servers=["ref"]), path=str(tmp_path))
    assert plan.wrk_bin == str(fake) and plan.nginx_bin is None
    plan.workdir.rmdir()


def test_cli_rejects_unknown_server_with_exit_2() -> None:
    p = subprocess.run([sys.executable, "-m", "edgecdn.cli", "bench", "serve", "--servers",
                        "varnish"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert p.returncode == 2 and "unknown server 'varnish'" in p.stderr
