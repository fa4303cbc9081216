"""End to end against the real components: moto S3, two real edge processes verifying
steering's tokens, the real steering service; one edge is killed mid-run."""

from __future__ import annotations

import json
import os
import sys
import urllib.request

import boto3

from bench.demo import Processes, http_ok, wait_for
from bench.faults import FaultAction
from bench.player_checksums import OriginChecksums
from bench.players import bench_table, build_settings, run_players
from contracts.fleet import load_fleet
from tests.bench_players.standins import library
from tests.conftest import ROOT, free_port


def _all_up(port: int, names: set[str]) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/fleet", timeout=1) as r:
            doc = json.loads(r.read())
    except (OSError, ValueError):
        return False
    return {e["name"] for e in doc["edges"] if e["state"] == "up"} == names


def test_players_through_real_edges_and_steering_survive_an_edge_kill(
        tmp_path, s3_endpoint, s3_bucket):
    import asyncio

    content = library(titles=("a", "b"), segments=4)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for path, body in content.items():
        s3.put_object(Bucket=s3_bucket, Key="pk" + path, Body=body)
    procs = Processes(tmp_path / "logs")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ports = {"e1": free_port(), "e2": free_port()}
    steer_port = free_port()
    try:
        for name, port in ports.items():
            procs.start(name, [sys.executable, "-m", "edgecdn.cli", "edge", "--listen",
                               f"127.0.0.1:{port}", "--origin", f"s3://{s3_bucket}/pk",
                               "--endpoint-url", s3_endpoint, "--cache-dir",
                               str(tmp_path / name), "--memory-cache", "64MiB",
                               "--disk-cache", "256MiB", "--name", name, "--no-fsync",
                               "--token-secret", "k1=sekrit", "--access-log", ""], env)
        edges = "\n".join(
            f'    [[regions.sites.edges]]\n    name = "{n}"\n    url = "http://127.0.0.1:{p}"'
            for n, p in ports.items())
        fleet_path = tmp_path / "fleet.toml"
        fleet_path.write_text(f"""
[steering]
listen = "127.0.0.1:{steer_port}"
trusted_callers = ["127.0.0.1/32"]
probe_interval = 0.3
ramp_seconds = 0
[signing]
active_kid = "k1"
[signing.secrets]
k1 = "sekrit"
[origin]
url = "s3://{s3_bucket}/pk"
[bench]
ramp = 0.3
request_timeout = 2.0
[[bench.clients]]
prefix = "10.9.0.0/16"
[[regions]]
name = "r1"
  [[regions.sites]]
  name = "s1"
  lat = 51.5
  lon = 0.0
{edges}
""")
        procs.start("steering", [sys.executable, "-m", "edgecdn.cli", "steer", "--config",
                                 str(fleet_path)], env)
        for n, p in ports.items():
            wait_for(n, lambda p=p: http_ok(f"http://127.0.0.1:{p}/healthz"), 30, procs, n)
        wait_for("steering", lambda: _all_up(steer_port, set(ports)), 30, procs, "steering")
        checks = OriginChecksums.from_s3(f"s3://{s3_bucket}/pk", s3_endpoint)
        assert checks.titles() == ["a", "b"]
        fleet = load_fleet(fleet_path)
        s = build_settings(fleet, bench_table(fleet, None, {
            "players": 6, "duration": 4.0, "speed": 20.0, "seed": 2}), checks.titles(),
            [FaultAction(1.5, "kill", "e1")])
        s.pids = {"e1": procs.pid("e1")}
        # whichever edge rendezvous puts first for a title, e1 dies at 1.5 s
        rep = asyncio.run(run_players(s, checks))
    finally:
        procs.stop_all()
    assert rep["faults"][0]["ok"], rep["faults"]
    assert rep["plays"]["failed"] == 0, rep["plays"]
    assert rep["segments"]["corrupt"] == 0 and rep["segments"]["short"] == 0
    assert rep["segments"]["verified"] == rep["segments"]["played"] > 20
    assert rep["hit_ratio"]["object"] > 0.5  # real Cache-Status headers were read
    late = [b for b in rep["timeline"] if b["t"] > 3.0]
    assert late and all(not b["by_source"].get("e1") for b in late)
