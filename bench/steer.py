"""``edgecdn bench steer``: steering decisions per second and latency, like a player fleet asks.

A generated fleet (default 200 edges: 10 regions x 5 sites x 4 edges) with signing secrets
and a CloudFront key pair, a City mmdb placing client networks (IPv4 and IPv6) around each
region, and stand-in edges answering /healthz (with varied loads, some in the shedding band)
served by this process. The steering server runs as its own process (``edgecdn steer``)
pinned to one core; the load tool (wrk, with a Lua script cycling through pre-built requests
for random titles and ``client_ip``s) and this process are pinned to the other. Every answer
carries signed edge URLs and a signed CloudFront URL. Reported: decisions/s, p50/p99 at
saturation (closed loop), the server's CPU seconds and decisions per server CPU-second (the
per-core figure, robust to other load on a shared machine), then latency at a fixed rate
(``--rate``, default 10,000/s) from an open-loop load (``bench.steer_openloop``: latency
from each request's scheduled time, so stalls are not hidden by coordinated omission), and
how much of the server's core other processes took meanwhile. Steering code is not
imported: it is a separate program.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import wrk

REGION_CENTRES = [
    ("eu-west", 51.5, -0.1), ("eu-central", 50.1, 8.7), ("us-east", 40.7, -74.0),
    ("us-west", 37.8, -122.4), ("sa-east", -23.5, -46.6), ("ap-northeast", 35.7, 139.7),
    ("ap-southeast", 1.35, 103.8), ("ap-south", 19.1, 72.9), ("af-south", -26.2, 28.0),
    ("oc-east", -33.9, 151.2), ("eu-north", 59.3, 18.1), ("us-central", 41.9, -87.6),
]
CAPACITY_MBPS = 10_000
WRK_THREADS = 2


@dataclass
class SteerBenchResult:
    tool: str
    edges: int
    regions: int
    connections: int
    duration_s: float
    requests: int
    errors: int  # over the saturated runs
    decisions_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float
    decisions_per_cpu_s: float
    idle_cpu_fraction: float  # server CPU with no load (probing 200 edges, ticker)
    cpu_us_per_decision: float  # server CPU per decision, idle share subtracted
    sample_targets: int  # URLs in one answer (edges + CloudFront)
    server_cores: str  # where the servers were pinned (the load tool: the other core)
    probe_failures: int  # during the whole run: failed /healthz probes (should be 0)
    decision_log: bool
    runs_decisions_per_s: list[float] = field(default_factory=list)  # every saturated run
    others_on_server_core: float = 0.0  # share of the server core other processes used
    # second phase: open-loop at a fixed rate (bench.steer_openloop), latency from each
    # request's scheduled time (what the "p99 at 10,000/s" means)
    paced_rate_target: float = 0.0
    paced_decisions_per_s: float = 0.0
    paced_p50_ms: float = 0.0
    paced_p99_ms: float = 0.0
    paced_p999_ms: float = 0.0
    paced_max_ms: float = 0.0
    paced_p99_send_ms: float = 0.0  # from the actual send (pacer lateness left out)
    paced_pacer_late_p99_ms: float = 0.0  # how late the load tool itself ran
    paced_errors: int = 0
    paced_server_cpu_fraction: float = 0.0  # server CPU / wall during the paced run
    paced_others_on_server_core: float = 0.0
    paced_loop_waited_fraction: float = 0.0  # serving thread runnable but not running (/proc)
    naive_decisions_per_s: float = 0.0  # the naive aiohttp reference, same load, interleaved
    naive_p99_ms: float = 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _q(v: Any) -> str:
    return json.dumps(v)  # JSON strings/numbers/arrays are valid TOML here


def generate_fleet(root: Path, stub_port: int, edges: int, regions: int,
                   decision_log: str, seed: int = 1) -> tuple[Path, list[str]]:
    """Writes fleet.toml, a CloudFront key and a City mmdb; returns (fleet path, client IPs)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    if not 1 <= regions <= len(REGION_CENTRES):
        raise ValueError(f"regions must be 1..{len(REGION_CENTRES)}")
    rng = random.Random(seed)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (root / "cf.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City")
    clients: list[str] = []
    centres = REGION_CENTRES[:regions]
    for r, (_, lat, lon) in enumerate(centres):
        for k in range(20):
            clat, clon = lat + rng.uniform(-6, 6), lon + rng.uniform(-8, 8)
            rec = {"country": {"iso_code": "ZZ"},
                   "location": {"latitude": clat, "longitude": clon}}
            writer.insert_network(IPSet([f"10.{r}.{k}.0/24"]), rec)
            writer.insert_network(IPSet([f"2001:db8:{r:x}:{k:x}::/64"]), rec)
            clients += [f"10.{r}.{k}.{rng.randint(1, 254)}" for _ in range(9)]
            clients.append(f"2001:db8:{r:x}:{k:x}::{rng.randint(1, 65535):x}")
    writer.to_db_file(str(root / "clients.mmdb"))

    per_region = [edges // regions + (1 if i < edges % regions else 0) for i in range(regions)]
    lines = [
        "[steering]", 'geoip_db = "clients.mmdb"', f'default_region = "{centres[0][0]}"',
        'trusted_callers = ["127.0.0.1/32"]', 'admin_token = "bench"',
        f"decision_log = {_q(decision_log)}", "",
        "[signing]", 'active_kid = "k2"', "ttl = 300",
        "[signing.secrets]", 'k1 = "bench-old"', 'k2 = "bench-current"', "",
        "[cloudfront]", 'domain = "d111111abcdef8.cloudfront.net"', 'key_pair_id = "KBENCH"',
        'private_key = "cf.pem"', "url_ttl = 3600", "",
    ]
    names = []
    for (rname, lat, lon), n_edges in zip(centres, per_region, strict=True):
        lines += ["[[regions]]", f"name = {_q(rname)}"]
        n_sites = max(1, min(5, n_edges))
        for s in range(n_sites):
            sname = f"{rname}-s{s}"
            lines += ["[[regions.sites]]", f"name = {_q(sname)}",
                      f"lat = {lat + rng.uniform(-4, 4):.3f}", f"lon = {lon + rng.uniform(-6, 6):.3f}"]
            for e in range(n_edges // n_sites + (1 if s < n_edges % n_sites else 0)):
                ename = f"{sname}-e{e}"
                names.append(ename)
                lines += ["[[regions.sites.edges]]", f"name = {_q(ename)}",
                          f'url = "http://127.0.0.1:{stub_port}/e/{ename}"',
                          f"capacity_mbps = {CAPACITY_MBPS}"]
        lines.append("")
    (root / "fleet.toml").write_text("\n".join(lines) + "\n")
    return root / "fleet.toml", clients


def request_paths(clients: list[str], titles: int, n_requests: int = 4096,
                  seed: int = 2) -> list[str]:
    """Pre-built steering requests: a random title and a random ``client_ip`` each."""
    rng = random.Random(seed)
    reqs = []
    for _ in range(n_requests):
        t = rng.randrange(titles)
        ip = rng.choice(clients)
        reqs.append(f"/v1/steer?path=/titles/t{t}/master.m3u8&client_ip={ip}")
    return reqs


def lua_script(clients: list[str], titles: int, n_requests: int = 4096, seed: int = 2) -> str:
    """wrk script: pre-built requests (random title, random client_ip), JSON summary line."""
    return wrk.lua_script(request_paths(clients, titles, n_requests, seed))


class StubEdges:
    """One aiohttp server answering /e/<edge>/healthz for every generated edge."""

    def __init__(self, port: int, seed: int = 3) -> None:
        self.port = port
        self.rng = random.Random(seed)
        self.runner = None

    async def start(self) -> None:
        from aiohttp import web

        cap = CAPACITY_MBPS * 1e6 / 8

        base: dict[str, float] = {}

        async def healthz(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            # ~5% of edges sit in the shedding band, the rest at 10-70% load, drifting
            if name not in base:
                base[name] = 0.87 if len(base) % 20 == 0 else self.rng.uniform(0.1, 0.7)
            load = max(0.0, base[name] + self.rng.uniform(-0.03, 0.03))
            return web.json_response({"status": "ok", "active_connections": 10,
                                      "egress_bps": load * cap, "capacity_bps": cap,
                                      "hit_ratio": 0.9})

        app = web.Application()
        app.router.add_get("/e/{name}/healthz", healthz)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def run_naive(fleet_path: str, port: int) -> None:
    """The reference the issue measured (~3,700/s, p99 15 ms): a plain aiohttp app doing an
    mmdb lookup, a distance sort, rendezvous hashing and HMAC tokens on every request, with
    nothing precomputed. Run in its own process with the same load, for a ratio that holds
    on a noisy machine."""
    import math

    import maxminddb
    from aiohttp import web

    from contracts.fleet import load_fleet
    from contracts.keys import BadPath, ContentKey, normalize_path
    from contracts.rendezvous import rank
    from contracts.tokens import sign, token_query

    fleet = load_fleet(fleet_path)
    reader = maxminddb.open_database(str(Path(fleet_path).parent / "clients.mmdb"))
    assert fleet.signing is not None
    secret = fleet.signing.secrets[fleet.signing.active_kid]

    def km(a: float, b: float, c: float, d: float) -> float:
        p1, p2 = math.radians(a), math.radians(c)
        h = (math.sin((p2 - p1) / 2) ** 2
             + math.cos(p1) * math.cos(p2) * math.sin(math.radians(d - b) / 2) ** 2)
        return 12742.0 * math.asin(math.sqrt(h))

    async def steer(request: web.Request) -> web.Response:
        try:
            path = normalize_path(request.query["path"])
        except (KeyError, BadPath) as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        rec = reader.get(request.query.get("client_ip") or request.remote or "") or {}
        loc = rec.get("location", {})
        lat, lon = loc.get("latitude", 0.0), loc.get("longitude", 0.0)
        sites = sorted(fleet.sites, key=lambda s: km(lat, lon, s.lat, s.lon))[:3]
        acl = ContentKey.parse(path).title_prefix
        exp = int(time.time()) + fleet.signing.ttl
        targets = []
        for site in sites:
            by_name = {e.name: e for e in site.edges}
            for name in rank(acl, by_name)[:2]:
                tok = token_query(sign(secret, fleet.signing.active_kid, acl, exp))
                targets.append({"url": f"{by_name[name].url}{path}?{tok}", "edge": name,
                                "site": site.name})
        return web.json_response({"path": path, "targets": targets, "ttl": 30})

    app = web.Application()
    app.router.add_get("/v1/steer", steer)
    web.run_app(app, host="127.0.0.1", port=port, print=lambda *_: print("ready", flush=True),
                access_log=None)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_busy() -> dict[int, tuple[int, int]]:
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                v = [int(x) for x in vals]
                out[int(name[3:])] = (sum(v) - v[3] - v[4], sum(v))  # busy, total
    return out


async def pick_cores() -> tuple[str, str]:
    """(server core, load-tool core): the server on the core that was idlest over the last
    half second. On a machine shared with other work this keeps the comparison fair to us;
    on an idle one it is simply core 0 and 1."""
    a = _cpu_busy()
    await asyncio.sleep(0.5)
    b = _cpu_busy()
    busy = {c: (b[c][0] - a[c][0]) / max(1, b[c][1] - a[c][1]) for c in b if c in a}
    if len(busy) < 2:
        return "0", "1"
    order = sorted(busy, key=lambda c: busy[c])
    return str(order[0]), str(order[1])


def _pin(cores: str | None) -> list[str]:
    return ["taskset", "-c", cores] if cores and shutil.which("taskset") else []


async def run_wrk(port: int, script: Path, connections: int, duration: float,
                  cores: str | None) -> dict[str, float]:
    # two wrk threads on the load core: one thread alone often left both sides part idle
    # (measured: 6-12k/s with the server at 50-85% CPU, vs 12-21k/s with two)
    threads = max(1, min(WRK_THREADS, connections))
    cmd = [*_pin(cores), "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency",
           "-s", str(script), f"http://127.0.0.1:{port}/"]
    p = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE)
    out, err = await p.communicate()
    res = wrk.parse_mark(out.decode())
    if res is not None:
        return {"duration_us": res.duration_s * 1e6, "requests": res.requests,
                "errors": res.total_errors, "p50_us": res.p50_us, "p99_us": res.p99_us}
    raise RuntimeError(f"wrk printed no result: {out.decode()[-500:]} {err.decode()[-500:]}")


async def run_python(port: int, clients: list[str], titles: int, connections: int,
                     duration: float) -> dict[str, float]:
    """Fallback load generator when wrk is missing (saturates far below the server)."""
    import aiohttp

    lat: list[float] = []
    errors = 0
    rng = random.Random(4)
    stop = time.perf_counter() + duration

    async def worker(s: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            url = (f"http://127.0.0.1:{port}/v1/steer?path=/titles/t{rng.randrange(titles)}"
                   f"/master.m3u8&client_ip={rng.choice(clients)}")
            t0 = time.perf_counter()
            async with s.get(url) as r:
                await r.read()
                errors += r.status != 200
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:
        await asyncio.gather(*(worker(s) for _ in range(connections)))
    took = time.perf_counter() - t0
    lat.sort()
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6) if lat else (lambda q: 0)
    return {"duration_us": took * 1e6, "requests": len(lat), "errors": errors,
            "p50_us": pct(0.5), "p99_us": pct(0.99)}


async def bench(edges: int = 200, regions: int = 10, connections: int = 32,
                duration: float = 10.0, warmup: float = 3.0, titles: int = 1000,
                tool: str = "auto", server_cores: str | None = "0",
                client_cores: str | None = "1", decision_log: bool = True,
                rate: float = 10_000.0, repeat: int = 3,
                naive: bool = True) -> SteerBenchResult:
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    if server_cores == "auto" or client_cores == "auto":
        sc, cc = await pick_cores()
        server_cores = sc if server_cores == "auto" else server_cores
        client_cores = cc if client_cores == "auto" else client_cores
    # this process (stand-in edges answering probes) is not pinned: on the load tool's core
    # it would be starved by wrk and probes would time out
    with tempfile.TemporaryDirectory(prefix="steer-bench-") as tmp:
        root = Path(tmp)
        stub = StubEdges(free_port())
        log_target = str(root / "decisions.jsonl") if decision_log else ""
        fleet, clients = generate_fleet(root, stub.port, edges, regions, log_target)
        script = root / "steer.lua"
        script.write_text(lua_script(clients, titles))
        await stub.start()
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            *_pin(server_cores), sys.executable, "-m", "edgecdn.cli", "steer", "--config",
            str(fleet), "--listen", f"127.0.0.1:{port}", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        nproc = None
        nport = free_port()
        if naive:
            nproc = await asyncio.create_subprocess_exec(
                *_pin(server_cores), sys.executable, "-m", "bench.steer", "naive", str(fleet),
                str(nport), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            assert proc.stdout is not None
            ready = await asyncio.wait_for(proc.stdout.readline(), 60)
            if b"ready" not in ready:
                raise RuntimeError(f"steering did not start: {ready!r}")
            if nproc is not None:
                assert nproc.stdout is not None
                if b"ready" not in await asyncio.wait_for(nproc.stdout.readline(), 60):
                    raise RuntimeError("naive reference server did not start")
            sample = await _sample(port, clients[0])
            if warmup > 0:
                await _load(tool, port, script, clients, titles, connections, warmup,
                            client_cores)
            c_idle, t_idle = cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(2.0)
            idle = (cpu_seconds(proc.pid) - c_idle) / (time.monotonic() - t_idle)
            runs = []  # (result, server cpu): the median run by throughput is reported
            naive_runs: list[dict[str, float]] = []
            if nproc is not None and warmup > 0:
                await _load(tool, nport, script, clients, titles, connections, warmup,
                            client_cores)
            for _ in range(max(1, repeat)):  # interleaved with the reference, if any
                cpu0, core0, t0 = cpu_seconds(proc.pid), _core_busy(server_cores), \
                    time.monotonic()
                r1 = await _load(tool, port, script, clients, titles, connections, duration,
                                 client_cores)
                cpu1 = cpu_seconds(proc.pid) - cpu0
                r1["others"] = _others(core0, _core_busy(server_cores), cpu1,
                                       time.monotonic() - t0)
                runs.append((r1, cpu1))
                if nproc is not None:
                    naive_runs.append(await _load(tool, nport, script, clients, titles,
                                                  connections, duration, client_cores))
            rates = sorted(r["requests"] / (r["duration_us"] / 1e6) for r, _ in runs)
            runs.sort(key=lambda x: x[0]["requests"] / (x[0]["duration_us"] / 1e6))
            res, cpu = runs[len(runs) // 2]
            errors = sum(int(r["errors"]) for r, _ in runs)
            paced: dict[str, Any] = {}
            if rate > 0:
                pfile = root / "paths.json"
                pfile.write_text(json.dumps(request_paths(clients, titles)))
                cpu0, core0, t0 = cpu_seconds(proc.pid), _core_busy(server_cores), \
                    time.monotonic()
                wait0 = runqueue_wait_s(proc.pid)
                paced = await run_openloop(port, pfile, rate, duration, connections,
                                           client_cores)
                wall = time.monotonic() - t0
                pcpu = cpu_seconds(proc.pid) - cpu0
                paced["server_cpu_fraction"] = pcpu / wall
                paced["others"] = _others(core0, _core_busy(server_cores), pcpu, wall)
                paced["waited"] = (runqueue_wait_s(proc.pid) - wait0) / wall
            probe_failures = await _probe_failures(port)
        finally:
            for p in (proc, nproc):
                if p is not None and p.returncode is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(p.wait(), 10)
                    except TimeoutError:
                        p.kill()
            await stub.stop()
    naive_rate = naive_p99 = 0.0
    if naive_runs:
        naive_runs.sort(key=lambda r: r["requests"] / (r["duration_us"] / 1e6))
        mid = naive_runs[len(naive_runs) // 2]
        naive_rate = mid["requests"] / (mid["duration_us"] / 1e6)
        naive_p99 = mid["p99_us"] / 1000
    secs = res["duration_us"] / 1e6
    n = int(res["requests"])
    return SteerBenchResult(
        tool=tool, edges=edges, regions=regions, connections=connections,
        duration_s=round(secs, 3), requests=n,
        errors=errors,
        decisions_per_s=round(n / secs, 1) if secs else 0.0,
        p50_ms=round(res["p50_us"] / 1000, 3), p99_ms=round(res["p99_us"] / 1000, 3),
        server_cpu_s=round(cpu, 3), decisions_per_cpu_s=round(n / cpu, 1) if cpu else 0.0,
        idle_cpu_fraction=round(idle, 4),
        cpu_us_per_decision=round((cpu - idle * secs) / n * 1e6, 1) if n else 0.0,
        sample_targets=sample, server_cores=server_cores or "", decision_log=decision_log,
        probe_failures=probe_failures,
        runs_decisions_per_s=[round(x, 1) for x in rates],
        others_on_server_core=round(res.get("others", 0.0), 3),
        paced_rate_target=rate if paced else 0.0,
        paced_decisions_per_s=paced.get("achieved_rate", 0.0),
        paced_p50_ms=paced.get("p50_ms", 0.0), paced_p99_ms=paced.get("p99_ms", 0.0),
        paced_p999_ms=paced.get("p999_ms", 0.0), paced_max_ms=paced.get("max_ms", 0.0),
        paced_p99_send_ms=paced.get("p99_send_ms", 0.0),
        paced_pacer_late_p99_ms=paced.get("pacer_late_p99_ms", 0.0),
        paced_errors=int(paced.get("errors", 0)),
        paced_server_cpu_fraction=round(paced.get("server_cpu_fraction", 0.0), 3),
        paced_others_on_server_core=round(paced.get("others", 0.0), 3),
        paced_loop_waited_fraction=round(paced.get("waited", 0.0), 3),
        naive_decisions_per_s=round(naive_rate, 1), naive_p99_ms=round(naive_p99, 3))


async def run_openloop(port: int, paths: Path, rate: float, duration: float,
                       connections: int, cores: str | None) -> dict[str, Any]:
    """bench.steer_openloop in its own process on the load core (wrk2-style latency)."""
    p = await asyncio.create_subprocess_exec(
        *_pin(cores), sys.executable, "-m", "bench.steer_openloop", str(port), f"{rate:g}",
        f"{duration:g}", str(connections), str(paths), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await p.communicate()
    try:
        return json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"open-loop load failed: {err.decode()[-500:]}") from None


def runqueue_wait_s(pid: int) -> float:
    """Seconds the process's main (serving) thread has spent runnable but waiting for a CPU
    (/proc/PID/schedstat, 0 where the kernel does not keep it)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _core_busy(cores: str | None) -> tuple[int, int]:
    """(busy, total) jiffies of the server core ((0, 0) when not pinned to one core)."""
    if not cores or not cores.isdigit():
        return 0, 0
    return _cpu_busy().get(int(cores), (0, 0))


def _others(before: tuple[int, int], after: tuple[int, int], server_cpu: float,
            wall: float) -> float:
    """Share of the server core used by other processes over a run (a shared machine)."""
    if after[1] <= before[1] or wall <= 0:
        return 0.0
    hz = os.sysconf("SC_CLK_TCK")
    busy = (after[0] - before[0]) / hz
    return max(0.0, (busy - server_cpu) / wall)


async def _load(tool: str, port: int, script: Path, clients: list[str], titles: int,
                connections: int, duration: float, cores: str | None) -> dict[str, float]:
    if tool == "wrk":
        return await run_wrk(port, script, connections, duration, cores)
    return await run_python(port, clients, titles, connections, duration)


async def _sample(port: int, client: str) -> int:
    """One answer, checked: several signed edge URLs from >= 2 sites, signed CloudFront last."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/steer?path=/titles/t1/master.m3u8&client_ip={client}"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        doc = await r.json()
    t = doc["targets"]
    edges = [x for x in t if x["kind"] == "edge"]
    ok = (len({x["site"] for x in edges}) >= 2 and all("token=" in x["url"] for x in edges)
          and t[-1]["kind"] == "cloudfront" and "Signature=" in t[-1]["url"])
    if not ok:
        raise RuntimeError(f"unexpected steering answer: {json.dumps(doc)[:500]}")
    return len(t)


async def _probe_failures(port: int) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("edgecdn_steer_probe_failures_total{")))


def format_result(r: SteerBenchResult) -> str:
    lines = [
        f"steering bench ({r.tool}, {r.edges} edges in {r.regions} regions, "
        f"{r.connections} connections, {r.duration_s:.1f}s, server on core "
        f"{r.server_cores or 'any'}, {r.sample_targets} signed URLs per answer, decision log "
        f"{'on' if r.decision_log else 'off'}):",
        f"  saturated (median of {len(r.runs_decisions_per_s)} runs: "
        f"{', '.join(f'{x:,.0f}' for x in r.runs_decisions_per_s)}): "
        f"{r.decisions_per_s:,.0f} decisions/s   p50 {r.p50_ms:.2f} ms   p99 {r.p99_ms:.2f} ms"
        f"   errors {r.errors}   other processes on the server core {r.others_on_server_core:.0%}",
    ]
    if r.paced_rate_target:
        lines.append(
            f"  open loop at {r.paced_rate_target:,.0f}/s: {r.paced_decisions_per_s:,.0f} "
            f"decisions/s   p50 {r.paced_p50_ms:.2f}   p99 {r.paced_p99_ms:.2f}   p99.9 "
            f"{r.paced_p999_ms:.2f}   max {r.paced_max_ms:.1f} ms (from schedule; p99 from "
            f"send {r.paced_p99_send_ms:.2f} ms, load tool late p99 "
            f"{r.paced_pacer_late_p99_ms:.2f} ms)   errors {r.paced_errors}   server CPU "
            f"{r.paced_server_cpu_fraction:.0%} of a core, other processes on its core "
            f"{r.paced_others_on_server_core:.0%}, serving thread waiting for a CPU "
            f"{r.paced_loop_waited_fraction:.0%} of the time")
    if r.naive_decisions_per_s:
        lines.append(
            f"  naive aiohttp reference, same load, interleaved: "
            f"{r.naive_decisions_per_s:,.0f} decisions/s   p99 {r.naive_p99_ms:.2f} ms "
            f"(edgecdn {r.decisions_per_s / r.naive_decisions_per_s:.2f}x)")
    lines.append(
        f"  server CPU {r.server_cpu_s:.2f} s -> {r.decisions_per_cpu_s:,.0f} decisions "
        f"per CPU-second; idle (probes) {r.idle_cpu_fraction:.1%} of a core; "
        f"{r.cpu_us_per_decision:.0f} µs CPU per decision net of idle; "
        f"probe failures {r.probe_failures}")
    lines.append("  target >= 10,000 decisions/s per core: "
                 + ("met" if r.decisions_per_cpu_s >= 10_000 else "NOT met")
                 + (f"; p99 < 5 ms at {r.paced_rate_target:,.0f}/s: "
                    + ("met" if r.paced_p99_ms < 5 and not r.paced_errors else "NOT met")
                    if r.paced_rate_target else ""))
    return "\n".join(lines)


def result_json(r: SteerBenchResult) -> str:
    return json.dumps(asdict(r))


if __name__ == "__main__":  # python -m bench.steer naive FLEET PORT (the reference server)
    if len(sys.argv) == 4 and sys.argv[1] == "naive":
        run_naive(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit("usage: python -m bench.steer naive FLEET PORT")
