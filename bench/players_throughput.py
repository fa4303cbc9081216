"""How much segment traffic can the player harness push through ONE real edge?

    python -m bench.players_throughput [--players 48] [--duration 20] [--segment 2MiB]

Starts moto, uploads a synthetic title (one rendition of N fixed-size segments), one real
edge (memory tier big enough to hold it) and the real steering service with a one-edge
fleet; warms the edge, then runs the harness flat out (accelerated playback, every byte
MD5-checked) and reports Gbit/s with the CPU seconds the harness, the edge and steering
each used (from /proc), so the report says which side ran out first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.demo import PY, Processes, http_ok, wait_for
from bench.fleetgen import free_port
from contracts.sizes import parse_size

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime+stime of a process and its reaped children (the edge may have workers)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in f[11:15]) / TICK


def group_cpu(pgid: int) -> float:
    total = 0.0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                f = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(f[2]) == pgid:
                total += sum(int(x) for x in f[11:13]) / TICK
    return total


def sched_seconds(pid: int) -> tuple[float, float]:
    """(on-CPU, runnable-but-waiting) seconds over all threads, from /proc schedstat: the
    second number says how much a process was held back by CPU contention."""
    run = wait = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0, 0.0
    for t in tasks:
        try:
            f = Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()
        except OSError:
            continue
        run += int(f[0])
        wait += int(f[1])
    return run / 1e9, wait / 1e9


def _thread_sched(pid: int, tid: int) -> tuple[float, float]:
    try:
        f = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
    except OSError:
        return 0.0, 0.0
    return int(f[0]) / 1e9, int(f[1]) / 1e9


def synthetic_title(segments: int, size: int) -> dict[str, bytes]:
    rng = random.Random(0)
    out = {}
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for i in range(segments):
        lines += ["#EXTINF:4.0,", f"seg_{i:05d}.ts"]
        out[f"/titles/big/hd/seg_{i:05d}.ts"] = rng.randbytes(size)
    lines.append("#EXT-X-ENDLIST")
    out["/titles/big/hd/index.m3u8"] = ("\n".join(lines) + "\n").encode()
    out["/titles/big/master.m3u8"] = (
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=4000000\nhd/index.m3u8\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--players", type=int, default=48)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--segments", type=int, default=40)
    ap.add_argument("--segment", default="2MiB")
    ap.add_argument("--edge-workers", type=int, default=1)
    ap.add_argument("--procs", type=int, default=1, help="harness processes")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    import boto3

    from bench.player_checksums import OriginChecksums
    from bench.players import bench_table, build_settings
    from bench.players_cli import execute
    from contracts.fleet import load_fleet

    root = Path(tempfile.mkdtemp(prefix="edgecdn-tput-"))
    procs = Processes(root / "logs")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t",
               AWS_DEFAULT_REGION="us-east-1")
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    try:
        s3_port = free_port()
        s3_url = f"http://127.0.0.1:{s3_port}"
        procs.start("moto", [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                    env)
        wait_for("moto", lambda: http_ok(f"{s3_url}/moto-api/"), 30, procs, "moto")
        s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
        s3.create_bucket(Bucket="tput")
        content = synthetic_title(args.segments, parse_size(args.segment))
        for p, body in content.items():
            s3.put_object(Bucket="tput", Key="o" + p, Body=body)
        edge_port, steer_port = free_port(), free_port()
        procs.start("edge", [PY, "-m", "edgecdn.cli", "edge", "--listen",
                             f"127.0.0.1:{edge_port}", "--origin", "s3://tput/o",
                             "--endpoint-url", s3_url, "--cache-dir", str(root / "cache"),
                             "--memory-cache", "1GiB", "--disk-cache", "2GiB", "--name", "e1",
                             "--workers", str(args.edge_workers), "--no-fsync",
                             "--access-log", ""], env)
        wait_for("edge", lambda: http_ok(f"http://127.0.0.1:{edge_port}/healthz"), 30, procs,
                 "edge")
        fleet_path = root / "fleet.toml"
        fleet_path.write_text(f"""
[steering]
listen = "127.0.0.1:{steer_port}"
trusted_callers = ["127.0.0.1/32"]
[bench]
titles = ["big"]
abandon_p = 0.0
max_buffer = 100000.0
ramp = 0.5
[[bench.clients]]
prefix = "10.0.0.0/8"
[[regions]]
name = "r1"
  [[regions.sites]]
  name = "s1"
  lat = 51.5
  lon = 0.0
    [[regions.sites.edges]]
    name = "e1"
    url = "http://127.0.0.1:{edge_port}"
    capacity_mbps = 100000
""")
        procs.start("steering", [PY, "-m", "edgecdn.cli", "steer", "--config",
                                 str(fleet_path)], env)
        wait_for("steering", lambda: http_ok(
            f"http://127.0.0.1:{steer_port}/v1/steer?path=/titles/big/master.m3u8"), 30,
            procs, "steering")
        checks = OriginChecksums({p: (len(b), hashlib.md5(b).hexdigest())
                                  for p, b in content.items()})
        fleet = load_fleet(fleet_path)
        warm = build_settings(fleet, bench_table(fleet, None, {
            "players": 1, "duration": 60, "speed": 1000.0, "sessions": 1}), [], [])
        w = execute(warm, checks, False)
        before = {n: group_cpu(procs.pid(n)) for n in ("edge", "steering")}
        me0 = cpu_seconds(os.getpid())  # children: reaped at the end, counted in cutime
        sched0 = {n: sched_seconds(pid) for n, pid in
                  (("harness", os.getpid()), ("edge", procs.pid("edge")))}
        loop0 = _thread_sched(os.getpid(), os.getpid())
        s = build_settings(fleet, bench_table(fleet, None, {
            "players": args.players, "duration": args.duration, "speed": 10000.0,
            "procs": args.procs}), [], [])
        t0 = time.perf_counter()
        rep = execute(s, checks, False)
        wall = time.perf_counter() - t0
        cpu = {n: round(group_cpu(procs.pid(n)) - before[n], 2) for n in before}
        cpu["harness"] = round(cpu_seconds(os.getpid()) - me0, 2)
        waited = {}
        for n, pid in (("harness", os.getpid()), ("edge", procs.pid("edge"))):
            r1, w1 = sched_seconds(pid)
            waited[n] = {"on_cpu_s": round(r1 - sched0[n][0], 2),
                         "runnable_waiting_s": round(w1 - sched0[n][1], 2)}
        r1, w1 = _thread_sched(os.getpid(), os.getpid())
        waited["harness_event_loop_thread"] = {"on_cpu_s": round(r1 - loop0[0], 2),
                                               "runnable_waiting_s": round(w1 - loop0[1], 2)}
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        gbps = rep["bytes_total"] * 8 / 1e9 / wall
        out: dict[str, Any] = {
            "players": args.players, "procs": args.procs,
            "segment_bytes": parse_size(args.segment),
            "edge_workers": args.edge_workers, "wall_s": round(wall, 2),
            "bytes": rep["bytes_total"], "gbit_per_s": round(gbps, 3),
            "segments": rep["segments"], "hit_ratio": rep["hit_ratio"],
            "segment_latency_ms": rep["segment_latency_ms"], "cpu_seconds": cpu,
            "cpu_share_of_wall": {k: round(v / wall, 2) for k, v in cpu.items()},
            "sched_main_process_threads": waited, "load_average_1m": float(load),
            "warmup_bytes": w["bytes_total"], "failed": rep["plays"]["failed"],
        }
        print(json.dumps(out, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
