"""``edgecdn bench trace`` as a user runs it: the installed console script, real files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.workloads import VodConfig, write_vod_csv

ROOT = Path(__file__).resolve().parents[2]
EDGECDN = str(ROOT / ".venv" / "bin" / "edgecdn")
KEYS = {"policy", "capacity_bytes", "requests", "object_miss_ratio", "byte_miss_ratio"}


def edgecdn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EDGECDN, "bench", "trace", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "vod.csv"
    write_vod_csv(path, VodConfig(seed=5, requests=4000, titles=40))
    return path


def test_json_for_one_policy_and_capacity(small_trace: Path) -> None:
    r = edgecdn(str(small_trace), "--policy", "popularity", "--capacity", "5%", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == KEYS
    assert doc["policy"] == "popularity" and doc["requests"] == 4000
    assert doc["capacity_bytes"] > 0
    assert 0.0 < doc["byte_miss_ratio"] < 1.0 and 0.0 < doc["object_miss_ratio"] < 1.0


def test_absolute_capacity_and_several_policies_give_a_json_list(small_trace: Path) -> None:
    r = edgecdn(str(small_trace), "--policy", "lru", "--policy", "s3fifo,sieve",
                "--capacity", "64MiB", "--json")
    assert r.returncode == 0, r.stderr
    docs = json.loads(r.stdout)
    assert [d["policy"] for d in docs] == ["lru", "s3fifo", "sieve"]
    assert {d["capacity_bytes"] for d in docs} == {64 * 1024 * 1024}
    assert all(set(d) == KEYS for d in docs)


def test_all_policies_table_and_plot(small_trace: Path, tmp_path: Path) -> None:
    png = tmp_path / "miss.png"
    r = edgecdn(str(small_trace), "--policy", "all", "--capacity", "1%,10%", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    for name in ("lru", "popularity", "sieve", "s3fifo"):
        assert r.stdout.count(f"\n{name} ") == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_vod_workload_replayed_and_saved(tmp_path: Path) -> None:
    out = tmp_path / "saved.csv"
    r = edgecdn("--vod", "--seed", "2", "--requests", "3000", "--titles", "30",
                "--save-trace", str(out), "--policy", "lru", "--capacity", "5%", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["requests"] == 3000
    assert len(out.read_text().splitlines()) == 3000
    # the saved file replays to the very same figures
    again = edgecdn(str(out), "--policy", "lru", "--capacity", "5%", "--json")
    assert json.loads(again.stdout) == json.loads(r.stdout)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["/nonexistent.csv", "--capacity", "1%"], "No such file"),
        (["{trace}", "--capacity", "0%"], "percentage"),
        (["{trace}", "--capacity", "lots"], "not a size"),
        (["{trace}", "--policy", "mru", "--capacity", "1%"], "unknown policy"),
        (["{trace}"], "--capacity is required"),
        (["--capacity", "1%"], "give a trace FILE or --vod"),
        (["{bad}", "--capacity", "1%"], ":2:"),
    ],
)
def test_bad_input_is_refused_with_a_reason(small_trace: Path, tmp_path: Path, args, reason) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("0,a,1\nnot a trace line\n")
    r = edgecdn(*(a.format(trace=small_trace, bad=bad) for a in args))
    assert r.returncode == 2
    assert reason in r.stderr
    assert "Traceback" not in r.stderr
