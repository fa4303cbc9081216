"""`edgecdn bench players` end to end over stand-in edges and a real (moto) S3 origin:
titles discovered and checksums read from S3, JSON and PNG reports written and readable."""

from __future__ import annotations

import json

import boto3
import matplotlib.image

from edgecdn.cli import main
from tests.bench_players.conftest import write_fleet
from tests.bench_players.standins import EdgeBehaviour, StandinEdge, StandinSteering, library


def _fleet_with_origin(servers, tmp_path, s3_endpoint, bucket, content, behaviour=None):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for path, body in content.items():
        s3.put_object(Bucket=bucket, Key="packaged" + path, Body=body)
    urls = {}
    for name, site, region in (("e1", "s1", "r1"), ("e2", "s1", "r1"), ("e3", "s2", "r2")):
        e = StandinEdge(name, content, behaviour if name == "e1" else None)
        urls[name] = (servers.serve(e.app()), site, region)
    steer = servers.serve(StandinSteering(urls, ["e1", "e2", "e3"]).app())
    fleet = write_fleet(tmp_path / "fleet.toml", urls, steer, titles=())
    with fleet.open("a") as f:
        f.write(f'[origin]\nurl = "s3://{bucket}/packaged"\nendpoint_url = "{s3_endpoint}"\n')
    return fleet


def test_cli_writes_json_and_png_reports(servers, tmp_path, s3_endpoint, s3_bucket, capsys):
    content = library(titles=("a", "b"), segments=3)
    fleet = _fleet_with_origin(servers, tmp_path, s3_endpoint, s3_bucket, content)
    jpath, ppath = tmp_path / "out" / "r.json", tmp_path / "out" / "r.png"
    rc = main(["bench", "players", "--fleet", str(fleet), "--players", "3", "--duration", "20",
               "--speed", "40", "--sessions", "2", "--seed", "5", "--no-progress",
               "--json", str(jpath), "--plot", str(ppath)])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads(jpath.read_text())
    assert rep["run"]["titles"] == ["a", "b"]  # discovered from the origin listing
    assert rep["run"]["checksums_known"] == len(content)
    assert rep["plays"]["sessions"] == 6 and rep["plays"]["failed"] == 0
    assert rep["segments"]["verified"] == rep["segments"]["played"] > 0  # S3 ETags matched
    assert rep["segments"]["unverified"] == 0
    for key in ("startup_s", "rebuffer", "segment_latency_ms", "hit_ratio", "sources",
                "bytes_by_site", "bytes_by_region", "timeline", "latency_histogram"):
        assert key in rep
    assert rep["segment_latency_ms"]["p50"] <= rep["segment_latency_ms"]["p99"]
    assert 0 < rep["hit_ratio"]["byte"] < 1
    img = matplotlib.image.imread(ppath)
    assert img.ndim == 3 and img.shape[0] > 400 and img.shape[1] > 800
    assert "checksum-verified" in out and str(ppath) in out

    # the same run from saved checksums, without listing S3 again
    sums = tmp_path / "sums.json"
    assert main(["bench", "players", "--fleet", str(fleet), "--players", "1", "--duration",
                 "20", "--speed", "40", "--sessions", "1", "--no-progress",
                 "--save-checksums", str(sums)]) == 0
    rc = main(["bench", "players", "--fleet", str(fleet), "--players", "2", "--duration", "20",
               "--speed", "40", "--sessions", "1", "--no-progress", "--checksums", str(sums),
               "--origin", "s3://no-such-bucket-here/x", "--json", str(jpath)])
    assert rc == 0
    rep2 = json.loads(jpath.read_text())
    assert rep2["segments"]["verified"] == rep2["segments"]["played"] > 0


def test_cli_exit_status_says_when_a_segment_was_corrupt(servers, tmp_path, s3_endpoint,
                                                         s3_bucket, capsys):
    content = library(titles=("a",), segments=2)
    segs = {p for p in content if p.endswith(".ts")}
    fleet = _fleet_with_origin(servers, tmp_path, s3_endpoint, s3_bucket, content,
                               EdgeBehaviour(corrupt=segs))
    rc = main(["bench", "players", "--fleet", str(fleet), "--players", "1", "--duration", "20",
               "--speed", "40", "--sessions", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    assert " 0 corrupt" not in out and "corrupt" in out


def test_cli_refuses_bad_settings_with_a_reason(tmp_path, capsys):
    fleet = write_fleet(tmp_path / "f.toml", {"e1": ("http://127.0.0.1:1", "s1", "r1")},
                        "http://127.0.0.1:2", bench="bogus_key = 1")
    assert main(["bench", "players", "--fleet", str(fleet), "--no-verify"]) == 2
    assert "unknown keys ['bogus_key']" in capsys.readouterr().err
    fleet = write_fleet(tmp_path / "g.toml", {"e1": ("http://127.0.0.1:1", "s1", "r1")},
                        "http://127.0.0.1:2")
    assert main(["bench", "players", "--fleet", str(fleet), "--no-verify",
                 "--fault", "3:kill:nope"]) == 2
    assert "no edge 'nope'" in capsys.readouterr().err
    assert main(["bench", "players", "--fleet", str(fleet), "--players", "0",
                 "--no-verify"]) == 2


def test_live_view_shows_players_sources_and_faults(tmp_path):
    import io

    from rich.console import Console

    from bench.players import build_settings
    from bench.players_cli import LiveView
    from bench.playerstats import RequestSample, RunStats
    from contracts.fleet import load_fleet

    fleet = load_fleet(write_fleet(tmp_path / "f.toml", {"e1": ("http://127.0.0.1:1", "s1",
                                                                 "r1")}, "http://127.0.0.1:2"))
    s = build_settings(fleet, {"titles": ["t"], "clients": [{"prefix": "10.0.0.0/8"}],
                               "duration": 30, "steering_url": "http://127.0.0.1:2"},
                       [], [])
    st = RunStats()
    st.active_players = 7
    st.request(RequestSample(1.0, "segment", "e1", "s1", "r1", 200, 4_000_000, 0.01, "hit",
                             True))
    st.event(1.5, "kill e1", True, "pid 1")
    out = io.StringIO()
    Console(file=out, width=120).print(LiveView(s).render(st, 2.0))
    text = out.getvalue()
    assert "2.0/30s" in text and "e1" in text and "kill e1" in text
    assert "100.0%" in text  # byte hit ratio
