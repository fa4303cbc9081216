"""The proactive-fill measure over real HTTP: yesterday's logs -> ``fill plan`` -> one fill
window on a real ``edgecdn edge`` -> the same future player workload replayed through a warm
(filled) edge and a cold edge with the same disk budget; byte and object hit ratios from each
response's ``Cache-Status``, overall and over the first 10% of requests ("from its very first
request").

Everything is local: a moto S3 server on a free loopback port holds the catalogue, the logs
and the manifests; both edges are child processes in their own process groups, stopped on the
way out whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from contracts.logs import AccessRecord

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "fill-bench"
PREFIX = "o"  # the origin's key prefix: s3://BUCKET/o/titles/...
SITE, REGION, WARM, COLD = "lon", "eu", "lon-1", "cold-1"
RENDITIONS = (("480p", 0.7, 2), ("240p", 0.3, 1))  # name, share of sessions, size factor
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
         "AWS_DEFAULT_REGION": "us-east-1"}  # moto accepts any; never send real ones to it


@dataclass(slots=True)
class Params:
    titles: int = 16
    segments: int = 10
    seg_min: int = 32 * 1024  # 240p segment size range; 480p is twice that
    seg_max: int = 96 * 1024
    abandon: float = 0.2  # chance a session stops after each segment
    past_sessions: int = 20_000  # "yesterday's" logs (cheap: lines, not requests)
    sessions: int = 800  # the future workload replayed over HTTP against each edge
    share: float = 0.9  # the budget holds the objects making up this share of its bytes
    seed: int = 7
    concurrency: int = 4  # requests in flight per edge during the replay
    policy: str = "popularity"
    timeout: float = 120.0  # for the fill pass and for each edge's start


@dataclass(slots=True)
class Ratios:
    requests: int = 0
    hits: int = 0
    bytes: int = 0
    hit_bytes: int = 0
    errors: int = 0

    def add(self, size: int, hit: bool) -> None:
        self.requests += 1
        self.bytes += size
        if hit:
            self.hits += 1
            self.hit_bytes += size

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "bytes": self.bytes, "hit_bytes": self.hit_bytes,
                "byte_hit_ratio": round(self.hit_bytes / self.bytes, 4) if self.bytes else 0.0,
                "object_hit_ratio": round(self.hits / self.requests, 4) if self.requests
                else 0.0, "errors": self.errors}


@dataclass(slots=True)
class Replay:
    overall: Ratios = field(default_factory=Ratios)
    first: Ratios = field(default_factory=Ratios)  # the first 10% of requests
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.overall.as_dict(), "first_10pct": self.first.as_dict(),
                "seconds": round(self.seconds, 2)}


# ---- the synthetic catalogue and workloads (the shape of tests/origin/test_fill_measure.py) --

def catalogue(p: Params, rng: random.Random) -> dict[str, int]:
    """path -> size: a playlist and ``segments`` segments per title and rendition."""
    sizes: dict[str, int] = {}
    for t in range(p.titles):
        for r, _share, factor in RENDITIONS:
            base = f"/titles/t{t:03d}/{r}/"
            sizes[base + "index.m3u8"] = 400
            for s in range(p.segments):
                sizes[base + f"seg_{s:05d}.ts"] = rng.randrange(p.seg_min, p.seg_max) * factor
    return sizes


def workload(p: Params, rng: random.Random, sessions: int) -> list[str]:
    """Zipf titles, a rendition per session, start at segment 0, abandon early."""
    weights = [1 / (t + 1) for t in range(p.titles)]
    names = [r for r, _, _ in RENDITIONS]
    shares = [s for _, s, _ in RENDITIONS]
    out: list[str] = []
    for _ in range(sessions):
        t = rng.choices(range(p.titles), weights)[0]
        r = rng.choices(names, shares)[0]
        out.append(f"/titles/t{t:03d}/{r}/index.m3u8")
        for s in range(p.segments):
            out.append(f"/titles/t{t:03d}/{r}/seg_{s:05d}.ts")
            if rng.random() < p.abandon:
                break
    return out


def budget_for(requests: list[str], sizes: dict[str, int], share: float) -> int:
    """Bytes of the most requested objects that together make up ``share`` of the
    workload's requested bytes."""
    counts: dict[str, int] = {}
    for path in requests:
        counts[path] = counts.get(path, 0) + 1
    total = sum(sizes[p] for p in requests)
    budget = acc = 0
    for path in sorted(counts, key=lambda x: (-counts[x], x)):
        if acc >= share * total:
            break
        acc += counts[path] * sizes[path]
        budget += sizes[path]
    return budget


def log_lines(requests: list[str], sizes: dict[str, int], now: float) -> bytes:
    """Yesterday's access log of ``requests`` spread over the last two hours, gzipped JSON
    lines of contracts.logs.AccessRecord, as the edge's spool ships them."""
    n = max(1, len(requests))
    recs = (AccessRecord(ts=now - 7200 + 7200 * i / n, client="192.0.2.1", method="GET",
                         path=path, status=200, bytes=sizes[path], cache="hit", dur_ms=1.0,
                         edge=WARM, site=SITE, region=REGION).to_json()
            for i, path in enumerate(requests))
    return gzip.compress("\n".join(recs).encode())


def body(path: str, size: int) -> bytes:
    seed = path.encode()
    return (seed * (size // len(seed) + 1))[:size]


# ---- processes -----------------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


class EdgeProcess:
    """``edgecdn edge --config FILE`` in its own process group; ready on its 'ready on' line."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgecdn.cli", "edge", "--config", str(config)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.ready = threading.Event()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if " ready on " in line:
                self.ready.set()
        self.ready.set()  # exited: wait() returns and the caller checks poll()

    def wait_ready(self, timeout: float) -> None:
        if not self.ready.wait(timeout) or self.proc.poll() is not None:
            raise RuntimeError("edge did not start:\n" + "".join(self.lines[-20:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def edge_config(name: str, port: int, cache: Path, endpoint: str, disk: int, policy: str,
                fill: bool) -> str:
    lines = [
        "[edge]", f'name = "{name}"', f'site = "{SITE if fill else "cold"}"',
        f'region = "{REGION}"', f'listen = "127.0.0.1:{port}"', 'admin_token = ""', "",
        "[origin]", f'url = "s3://{BUCKET}/{PREFIX}"', f'endpoint_url = "{endpoint}"',
        'region = "us-east-1"', "",
        "[cache]", f'dir = "{cache}"', 'memory = "0"', f"disk = {disk}",
        f'policy = "{policy}"', "fsync = false", "",
        "[log]", 'access = ""', "spool = false", "",
    ]
    if fill:
        lines += ["[fill]", f'manifests = "s3://{BUCKET}/manifests/"', 'window = "now"',
                  "rate = 0", "refresh = 300", "concurrency = 4", ""]
    return "\n".join(lines)


FLEET = """
[origin]
url = "s3://{bucket}/{prefix}"
[[regions]]
name = "{region}"
  [[regions.sites]]
  name = "{site}"
  lat = 51.5
  lon = -0.1
  disk = {budget}
    [[regions.sites.edges]]
    name = "{edge}"
    url = "{url}"
"""


# ---- the replay ----------------------------------------------------------------------------

def is_hit(cache_status: str) -> bool:
    """RFC 9211: ``edgecdn; hit`` (a hit never carries fwd=)."""
    params = [x.strip() for x in cache_status.split(";")[1:]]
    return "hit" in params and not any(x.startswith("fwd=") for x in params)


async def replay(url: str, requests: list[str], sizes: dict[str, int],
                 concurrency: int) -> Replay:
    """GET every path in order, ``concurrency`` at a time (request i starts no earlier than
    request i - concurrency finished, so "the first 10%" stays the first 10%)."""
    out = Replay()
    first_n = max(1, len(requests) // 10)
    sem = asyncio.Semaphore(max(1, concurrency))
    t0 = time.monotonic()

    async def one(http: aiohttp.ClientSession, i: int, path: str) -> None:
        try:
            async with http.get(url + path) as r:
                data = await r.read()
                hit = is_hit(r.headers.get("Cache-Status", ""))
                ok = r.status == 200 and len(data) == sizes[path]
        except (TimeoutError, aiohttp.ClientError):
            ok, hit = False, False
        finally:
            sem.release()
        for ratios in (out.overall, out.first) if i < first_n else (out.overall,):
            if ok:
                ratios.add(sizes[path], hit)
            else:
                ratios.errors += 1

    timeout = aiohttp.ClientTimeout(total=30)
    conn = aiohttp.TCPConnector(limit=max(1, concurrency))
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as http:
        tasks = []
        for i, path in enumerate(requests):
            await sem.acquire()
            tasks.append(asyncio.create_task(one(http, i, path)))
        await asyncio.gather(*tasks)
    out.seconds = time.monotonic() - t0
    return out


async def wait_fill(url: str, timeout: float) -> dict[str, Any]:
    """The warm edge's /healthz fill status once its pass is complete."""
    end = time.monotonic() + timeout
    fill: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                async with http.get(url + "/healthz") as r:
                    fill = (await r.json()).get("fill") or {}
            if fill.get("state") == "complete" and fill.get("passes", 0) >= 1:
                return fill
            if fill.get("state") in ("disk full", "error", "disabled"):
                raise RuntimeError(f"warm edge fill stopped: {fill}")
            await asyncio.sleep(0.1)  # another process's status: polling is the interface
    raise RuntimeError(f"warm edge fill not complete after {timeout:.0f} s: {fill}")


# ---- the run -------------------------------------------------------------------------------

def _upload(endpoint: str, sizes: dict[str, int], logs: bytes, now: float) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"])
    s3.create_bucket(Bucket=BUCKET)

    def put(path: str) -> None:
        ctype = "application/vnd.apple.mpegurl" if path.endswith(".m3u8") else "video/mp2t"
        s3.put_object(Bucket=BUCKET, Key=PREFIX + path, Body=body(path, sizes[path]),
                      ContentType=ctype)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, sizes))
    # as edge/logship.py names a shipped spool file: logs/<site>/<edge>/<ts>-<pid>-<seq>.jsonl.gz
    s3.put_object(Bucket=BUCKET, Key=f"logs/{SITE}/{WARM}/{int(now)}-1-1.jsonl.gz", Body=logs,
                  ContentType="application/gzip")


async def run(p: Params, progress: Any = None) -> dict[str, Any]:
    """The whole measure; returns the JSON report. ``progress(str)`` is told each step."""
    say = progress or (lambda _msg: None)
    t_start = time.monotonic()
    rng = random.Random(p.seed)
    sizes = catalogue(p, rng)
    past = workload(p, random.Random(p.seed + 1), p.past_sessions)
    future = workload(p, random.Random(p.seed + 2), p.sessions)
    budget = budget_for(future, sizes, p.share)
    now = time.time()
    os.environ.update(CREDS)  # `fill plan` uses the standard chain; this is moto's fake pair
    env = {**os.environ, **CREDS}
    env.pop("AWS_ENDPOINT_URL_S3", None)
    edges: list[EdgeProcess] = []
    with tempfile.TemporaryDirectory(prefix="edgecdn-fill-bench-") as tmp, \
            moto_server() as endpoint:
        try:
            say(f"uploading {len(sizes)} objects and {len(past)} log lines to {endpoint}")
            await asyncio.to_thread(_upload, endpoint, sizes, log_lines(past, sizes, now), now)
            ports = {WARM: free_port(), COLD: free_port()}
            urls = {n: f"http://127.0.0.1:{port}" for n, port in ports.items()}
            fleet = Path(tmp, "fleet.toml")
            fleet.write_text(FLEET.format(bucket=BUCKET, prefix=PREFIX, region=REGION,
                                          site=SITE, budget=budget, edge=WARM, url=urls[WARM]))
            say("fill plan")
            from origin.fill_cli import plan

            summary = await asyncio.to_thread(plan, fleet, endpoint_url=endpoint,
                                              half_life="1h", now=now)
            for name in (WARM, COLD):
                conf = Path(tmp, f"{name}.toml")
                conf.write_text(edge_config(name, ports[name], Path(tmp, name), endpoint,
                                            budget, p.policy, fill=name == WARM))
                edges.append(EdgeProcess(conf, env))
            for e in edges:
                await asyncio.to_thread(e.wait_ready, p.timeout)
            say("warm edge filling")
            t_fill = time.monotonic()
            fill = await wait_fill(urls[WARM], p.timeout)
            fill_seconds = time.monotonic() - t_fill
            say(f"replaying {len(future)} requests through both edges")
            warm, cold = await asyncio.gather(
                replay(urls[WARM], future, sizes, p.concurrency),
                replay(urls[COLD], future, sizes, p.concurrency))
        finally:
            for e in edges:
                e.stop()
    site = summary["sites"].get(SITE, {})
    return {
        "params": asdict(p),
        "catalogue": {"objects": len(sizes), "bytes": sum(sizes.values())},
        "workload": {"sessions": p.sessions, "requests": len(future),
                     "bytes": sum(sizes[x] for x in future),
                     "first_10pct_requests": max(1, len(future) // 10)},
        "logs": {"lines": len(past)},
        "budget_bytes": budget,
        "plan": {"entries": site.get("entries", 0),
                 "bytes": sum(e["bytes"] for e in site.get("edges", {}).values())},
        "fill": {"state": fill.get("state"), "bytes": fill.get("bytes_present", 0),
                 "objects": fill.get("objects_present", 0),
                 "manifest_bytes": fill.get("bytes_total", 0),
                 "manifest_objects": fill.get("objects_total", 0),
                 "over_capacity": fill.get("over_capacity"),
                 "bytes_by_source": fill.get("bytes_by_source", {}),
                 "seconds": round(fill_seconds, 2)},
        "warm": {**warm.as_dict(), "url": urls[WARM], "pid": edges[0].proc.pid},
        "cold": {**cold.as_dict(), "url": urls[COLD], "pid": edges[1].proc.pid},
        "seconds": round(time.monotonic() - t_start, 2),
    }


def format_table(r: dict[str, Any]) -> Any:
    """A rich Table: warm beside cold, overall and over the first 10% of requests."""
    from rich.table import Table

    mib = 1024 * 1024
    t = Table(title=(f"fill measure: budget {r['budget_bytes'] / mib:.1f} MiB "
                     f"({r['budget_bytes'] / r['catalogue']['bytes']:.0%} of the catalogue), "
                     f"plan {r['plan']['entries']} objects, filled {r['fill']['objects']} "
                     f"({r['fill']['bytes'] / mib:.1f} MiB) in {r['fill']['seconds']} s, "
                     f"{r['workload']['requests']} requests"))
    t.add_column("edge")
    for c in ("byte hit", "object hit", "byte hit first 10%", "object hit first 10%",
              "errors", "replay s"):
        t.add_column(c, justify="right")
    for name in ("warm", "cold"):
        x = r[name]
        t.add_row(name, f"{x['byte_hit_ratio']:.1%}", f"{x['object_hit_ratio']:.1%}",
                  f"{x['first_10pct']['byte_hit_ratio']:.1%}",
                  f"{x['first_10pct']['object_hit_ratio']:.1%}", str(x["errors"]),
                  f"{x['seconds']:.1f}")
    return t


def result_json(r: dict[str, Any]) -> str:
    return json.dumps(r, indent=2)
