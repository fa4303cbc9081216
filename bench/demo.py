"""The embedded demo: a whole fleet on loopback, players through it, an edge killed and a
region evacuated half way, and a summary that says whether any viewer noticed.

Every process it starts (moto, the fault proxy, edges, steering) runs in its own process
group and is registered with ``Processes``, which kills the groups on normal exit, on an
exception, on Ctrl-C (SIGINT), SIGTERM/SIGHUP, and at interpreter exit.
"""

from __future__ import annotations

import atexit
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fleetgen import CLIENTS, FleetLayout, free_port, generate

PY = sys.executable


class Processes:
    """Children in their own process groups; ``stop_all`` ends every group we started."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stopped = False
        atexit.register(self.stop_all)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the child
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env, cwd=str(Path.cwd()))
        log.close()
        self.procs[name] = p
        return p

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def stop_all(self, grace: float = 3.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        for p in self.procs.values():
            if p.poll() is None:
                for sig in (signal.SIGCONT, signal.SIGTERM):  # a paused child must wake to die
                    try:
                        os.killpg(p.pid, sig)
                    except (ProcessLookupError, PermissionError):
                        pass
        deadline = time.monotonic() + grace
        for p in self.procs.values():
            try:
                p.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs.values():
            try:  # the group may outlive its leader (workers): always sweep it
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:
                pass


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C does, so ``finally`` blocks clean up. SIGINT gets
    Python's own handler back even when the demo was started with it ignored (``&``)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_for(what: str, check: Callable[[], bool], timeout: float,
             procs: Processes | None = None, name: str = "") -> None:
    """Wait for an external process to become ready (it tells us only by answering)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if procs is not None and name and not procs.alive(name):
            log = procs.logdir / f"{name}.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise RuntimeError(f"{what}: process exited\n{tail}")
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f}s")


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    res = subprocess.run([PY, "-m", "edgecdn.cli", *args], capture_output=True, text=True,
                         env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise RuntimeError(f"edgecdn {' '.join(args[:3])} failed ({res.returncode}):\n"
                           f"{(res.stderr or res.stdout)[-2000:]}")
    return res.stdout


def cli_has(*words: str) -> bool:
    """Does this build's ``edgecdn`` have that subcommand (components land one by one)?"""
    res = subprocess.run([PY, "-m", "edgecdn.cli", *words, "--help"], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL)
    return res.returncode == 0 and "(not built yet)" not in res.stdout and "--" in res.stdout


@dataclass(slots=True)
class DemoOptions:
    players: int = 300
    duration: float = 60.0
    speed: float = 1.0
    seed: int = 1
    titles: int = 3
    title_seconds: int = 32
    kill_edge: str = "nyc-1"
    evacuate: str = "eu-west"
    workdir: Path | None = None
    keep: bool = False
    out: Path = Path("demo-report")
    progress: bool = True


def make_source(ffmpeg: str, out: Path, seconds: int, pattern: str) -> Path:
    """A short test video (test pattern + tone) to package as a title."""
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", f"{pattern}=size=854x480:rate=25",
           "-f", "lavfi", "-i", "sine=frequency=523:sample_rate=44100",
           "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23",
           "-c:a", "aac", "-b:a", "96k", "-shortest", str(out)]
    subprocess.run(cmd, check=True, timeout=300, stdin=subprocess.DEVNULL)
    return out


def seed_logs(s3: Any, bucket: str, layout: FleetLayout, titles: list[str],
              objects: dict[str, int], seed: int) -> int:
    """Yesterday's access logs, shaped like the edges' own: the same Zipf popularity the
    players draw from, each request at the site nearest its client. The fill planner reads
    these to decide what each site should hold."""
    import random

    from contracts.logs import AccessRecord

    rng = random.Random(f"demo-logs:{seed}")
    near = {"london": "lon", "amsterdam": "ams", "new-york": "nyc", "washington": "iad"}
    weights = [1.0 / (k + 1) for k in range(len(titles))]
    paths_by_title: dict[str, list[str]] = {t: [] for t in titles}
    for p in sorted(objects):
        parts = p.split("/")
        if len(parts) == 5 and parts[2] in paths_by_title and not p.endswith(".m3u8"):
            paths_by_title[parts[2]].append(p)
    site_edges: dict[str, list[str]] = {}
    for e in layout.edges:
        site_edges.setdefault(e.site, []).append(e.name)
    lines: dict[tuple[str, str], list[str]] = {}
    now = time.time() - 3600
    n = 0
    for _ in range(600):
        _, label, *_rest = rng.choices(CLIENTS, weights=[c[5] for c in CLIENTS])[0]
        site = near[label]
        edge = rng.choice(site_edges[site])
        title = rng.choices(titles, weights=weights)[0]
        segs = paths_by_title[title]
        watch = len(segs) if rng.random() > 0.35 else max(1, len(segs) // 4)
        for p in segs[:watch]:
            rec = AccessRecord(now + n * 0.01, "10.0.0.1", "GET", p, 200, objects[p], "miss",
                               5.0, edge=edge, site=site)
            lines.setdefault((site, edge), []).append(rec.to_json())
            n += 1
    for (site, edge), ls in lines.items():
        body = gzip.compress(("\n".join(ls) + "\n").encode())
        s3.put_object(Bucket=bucket, Key=f"logs/{site}/{edge}/{int(now)}-1-0.jsonl.gz",
                      Body=body)
    return n


def run_demo(o: DemoOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Everything, start to finish; returns the players' report (plus a demo section)."""
    import boto3
    import imageio_ffmpeg

    from bench.faults import FaultAction
    from bench.player_checksums import OriginChecksums
    from bench.players import bench_table, build_settings, summary_lines
    from bench.players_cli import execute, write_outputs
    from contracts.fleet import load_fleet

    t_start = time.monotonic()
    root = o.workdir or Path(tempfile.mkdtemp(prefix="edgecdn-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    procs = Processes(root / "logs")
    env = dict(os.environ)
    env.setdefault("AWS_ACCESS_KEY_ID", "demo")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env.pop("AWS_PROFILE", None)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        os.environ[k] = env[k]

    def step(msg: str) -> None:
        say(f"[{time.monotonic() - t_start:6.1f}s] {msg}")

    try:
        # 1. a local S3
        s3_port = free_port()
        s3_url = f"http://127.0.0.1:{s3_port}"
        procs.start("moto", [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                    env)
        wait_for("moto S3", lambda: http_ok(f"{s3_url}/moto-api/"), 30, procs, "moto")
        env["AWS_ENDPOINT_URL_S3"] = s3_url
        s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
        bucket = "edgecdn-demo"
        s3.create_bucket(Bucket=bucket)
        step(f"moto S3 on {s3_url}, bucket {bucket}")

        # 2. titles: package with ffmpeg, ingest
        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        titles = [f"demo-{i + 1}" for i in range(o.titles)]
        patterns = ["testsrc2", "smptebars", "rgbtestsrc", "testsrc"]
        origin = f"s3://{bucket}/packaged"
        for i, t in enumerate(titles):
            src = make_source(ffmpeg, root / f"{t}.mp4", o.title_seconds,
                              patterns[i % len(patterns)])
            out = root / "packaged" / t
            run_cli(["origin", "package", str(src), "--title", t, "--out", str(out),
                     "--ladder", "480:1500k,360:800k,240:350k", "--preset", "ultrafast"], env)
            run_cli(["origin", "ingest", str(out), "--title", t, "--origin", origin,
                     "--endpoint-url", s3_url, "--no-progress"], env)
            step(f"packaged and ingested {t} ({o.title_seconds}s, 3 renditions)")
        checks = OriginChecksums.from_s3(origin, s3_url, client=s3)
        step(f"origin holds {len(checks.table)} objects "
             f"({sum(s for s, _ in checks.table.values()) / 1e6:.1f} MB)")

        # 3. the fleet
        layout = generate(root / "fleet", s3_url, bucket, fill=edge_accepts_fill(root, env))
        step(f"fleet file {layout.fleet}: 2 regions, 4 sites, {len(layout.edges)} edges")
        procs.start("faultproxy", [PY, "-m", "bench.faultproxy", "--listen",
                                   f"127.0.0.1:{layout.fault_proxy_port}", "--upstream", s3_url],
                    env)
        wait_for("fault proxy", lambda: http_ok(f"{layout.fault_proxy_url}/_fault"), 20,
                 procs, "faultproxy")
        edges = list(layout.edges) + ([layout.cloudfront] if layout.cloudfront else [])
        for e in edges:
            procs.start(e.name, [PY, "-m", "edgecdn.cli", "edge", "--config", str(e.config),
                                 "--name", e.name], env)
        for e in edges:
            wait_for(f"edge {e.name}", lambda e=e: http_ok(f"{e.url}/healthz"), 60, procs,
                     e.name)
        step(f"{len(layout.edges)} edges up (+ a CloudFront stand-in)"
             if layout.cloudfront else f"{len(layout.edges)} edges up")
        procs.start("steering", [PY, "-m", "edgecdn.cli", "steer", "--config",
                                 str(layout.fleet)], env)
        wait_for("steering", lambda: _all_up(layout), 60, procs, "steering")
        step(f"steering on {layout.steering_url}: every edge up")

        # 4. fill plan + fill
        fill = fill_fleet(o, layout, s3, bucket, titles, checks, env, step)

        # 5. players, with an edge killed and a region evacuated half way
        fleet = load_fleet(layout.fleet)
        half = o.duration / 2
        faults = [FaultAction(round(half * 0.85, 1), "kill", o.kill_edge),
                  FaultAction(round(half, 1), "evacuate", o.evacuate)]
        # players start over a quarter of the run, so sessions do not move in lock-step
        b = bench_table(fleet, None, {"players": o.players, "duration": o.duration,
                                      "speed": o.speed, "seed": o.seed,
                                      "ramp": round(o.duration / 4, 1)})
        s = build_settings(fleet, b, checks.titles(), faults)
        s.pids = {e.name: procs.pid(e.name) for e in layout.edges}
        step(f"{o.players} players for {o.duration:g}s at {o.speed:g}x; kill {o.kill_edge} at "
             f"{faults[0].at:g}s, evacuate {o.evacuate} at {faults[1].at:g}s")
        rep = execute(s, checks, o.progress and sys.stderr.isatty())
        rep["demo"] = {"fill": fill, "workdir": str(root),
                       "before_after": before_after(rep, faults[0].at)}
        o.out.mkdir(parents=True, exist_ok=True)
        jpath, ppath = o.out / "players.json", o.out / "players.png"
        write_outputs(rep, str(jpath), str(ppath))
        step("run finished")
        for line in summary_lines(rep):
            say("  " + line)
        for line in rep["demo"]["before_after"]:
            say("  " + line)
        say(f"  fill: {fill.get('summary', fill)}")
        say(f"  JSON report: {jpath.resolve()}")
        say(f"  PNG report:  {ppath.resolve()}")
        rep["demo"]["seconds"] = round(time.monotonic() - t_start, 1)
        rep["demo"]["pids"] = {name: p.pid for name, p in procs.procs.items()}
        return rep
    finally:
        procs.stop_all()
        if not o.keep and o.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


def edge_accepts_fill(root: Path, env: dict[str, str]) -> bool:
    """Does this build's edge take a [fill] section? Asked of the edge's own config loader,
    in a child process (bench does not import the edge)."""
    probe = root / "fill-probe.toml"
    probe.write_text('[origin]\nurl = "s3://b/p"\n[fill]\nenabled = true\n'
                     'manifests = "s3://b/manifests/"\nwindow = "always"\n')
    res = subprocess.run([PY, "-c", "import sys; from edge.config import load_config; "
                          "load_config(sys.argv[1])", str(probe)], capture_output=True,
                         env=env, stdin=subprocess.DEVNULL)
    return res.returncode == 0


def _all_up(layout: FleetLayout) -> bool:
    try:
        with urllib.request.urlopen(f"{layout.steering_url}/v1/fleet", timeout=1) as r:
            doc = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    edges = doc.get("edges", doc) if isinstance(doc, dict) else doc
    states = {}
    if isinstance(edges, list):
        states = {str(e.get("name")): str(e.get("state", "")) for e in edges}
    elif isinstance(edges, dict):
        states = {k: str(v.get("state", "")) for k, v in edges.items() if isinstance(v, dict)}
    regions = doc.get("regions", {}) if isinstance(doc, dict) else {}
    settled = all(float(r.get("keep", 1.0)) >= 0.999 for r in regions.values()
                  if isinstance(r, dict))  # start-up evacuation ramps back before we start
    return settled and all(states.get(e.name) == "up" for e in layout.edges)


def fill_fleet(o: DemoOptions, layout: FleetLayout, s3: Any, bucket: str, titles: list[str],
               checks: Any, env: dict[str, str], step: Callable[[str], None]) -> dict[str, Any]:
    """Seed popularity logs, run ``fill plan``; the edges' fill workers take it from there."""
    objects = {p: size for p, (size, _) in checks.table.items()}
    n = seed_logs(s3, bucket, layout, titles, objects, o.seed)
    if not cli_has("fill", "plan"):
        step("fill plan: not in this build, skipped")
        return {"summary": "skipped (no fill plan in this build)"}
    out = run_cli(["fill", "plan", "--fleet", str(layout.fleet), "--endpoint-url",
                   layout.s3_endpoint, "--json"], env)
    try:
        doc = json.loads(out)
    except ValueError:
        doc = {"output": out[-500:]}
    step(f"fill plan from {n} logged requests: manifests written")
    if "[fill]" not in layout.edges[0].config.read_text():
        step("fill: this build's edge has no fill worker; the caches start cold")
        return {"summary": "planned; edges have no fill worker in this build", "plan": doc}
    deadline = time.monotonic() + 45
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = {e.name: _fill_status(e.url) for e in layout.edges}
        if all(s and s.get("manifest") and s.get("progress", 0) >= 1.0
               for s in status.values()):
            break
        time.sleep(0.5)  # polling other processes' /healthz: they have no other way to tell
    by_src: dict[str, int] = {}
    done = 0
    for s in status.values():
        for k, v in (s or {}).get("bytes_by_source", {}).items():
            by_src[k] = by_src.get(k, 0) + int(v)
        done += int((s or {}).get("progress", 0) >= 1.0)
    mb = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sorted(by_src.items())) or "nothing"
    summary = f"{done}/{len(layout.edges)} edges filled ({mb})"
    step(f"fill: {summary}")
    return {"summary": summary, "plan": doc, "bytes_by_source": by_src}


def _fill_status(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
            return dict(json.loads(r.read()).get("fill") or {})
    except (urllib.error.URLError, OSError, ValueError):
        return {}


def before_after(rep: dict[str, Any], t_fault: float) -> list[str]:
    """Where the bytes went before the first fault and after the last one settled."""
    tl = rep.get("timeline", [])
    faults = rep.get("faults", [])
    t_last = max([f["t"] for f in faults], default=t_fault)

    def share(rows: list[dict[str, Any]], key: str) -> str:
        tot: dict[str, int] = {}
        for b in rows:
            for k, v in b.get(key, {}).items():
                tot[k] = tot.get(k, 0) + v
        s = sum(tot.values()) or 1
        return ", ".join(f"{k} {v / s * 100:.0f}%" for k, v in sorted(tot.items()))

    first = [b for b in tl if b["t"] < 10]
    fb = sum(b["bytes"] for b in first)
    first_hr = f"{sum(b['hit_bytes'] for b in first) / fb * 100:.1f}%" if fb else "n/a"
    before = [b for b in tl if b["t"] < t_fault]
    after = [b for b in tl if b["t"] >= t_last + 5]
    return [
        f"before the faults: regions {share(before, 'by_region')}; "
        f"sites {share(before, 'by_site')}",
        f"after the faults:  regions {share(after, 'by_region')}; "
        f"sites {share(after, 'by_site')}",
        f"edges after the faults: {share(after, 'by_source')}",
        f"byte hit ratio in the first 10 s (what the fill placed): {first_hr}",
    ]
