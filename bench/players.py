"""The player load harness: N simulated players through a fleet, faults on schedule, a report.

Settings come from the fleet file's ``[bench]`` table, then a scenario file's ``[bench]``,
then command-line flags (later wins). Everything talks to the fleet over HTTP only: steering's
``/v1/steer`` (with ``client_ip``, as a trusted playback API would), the edges' URLs it
returns, steering's admin API and the origin fault proxy for faults.

``[bench]`` keys (all optional except where the fleet cannot tell)::

    titles = ["t1", "t2"]          # most popular first; default: discovered from the origin
    zipf_s = 1.0                   # title popularity exponent
    abandon_p = 0.4                # share of viewers who leave early
    abandon_mean = 0.25            # mean watched fraction of those who leave
    steering_url = "http://..."    # default: http://<[steering] listen>
    origin = "s3://bucket/prefix"  # default: [origin] url; for checksums and title discovery
    s3_endpoint = "http://..."     # default: [origin] endpoint_url, else the AWS chain
    fault_proxy = "http://..."     # the bench.faultproxy the edges' origin goes through
    cloudfront_url = "http://..."  # where CloudFront URLs really go (rehearsals on loopback)
    max_buffer = 30.0              # media seconds a player buffers ahead
    request_timeout = 4.0          # seconds before a request fails over
    ramp = 5.0                     # seconds over which players start
    connect_timeout = 1.0
    players = 10                   # also --players; likewise duration, speed, seed,
    duration = 60.0                #   sessions (plays per player, 0 = until the end)
    procs = 1                      #   and procs (harness processes sharing the players)
    [[bench.clients]]              # client geo prefixes, drawn by weight
    prefix = "10.1.0.0/16"
    weight = 1.0
    label = "london"
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.faults import FaultAction, FaultController, run_schedule, validate_targets
from bench.player import (
    ClientPrefix,
    Player,
    PlayerConfig,
    PlayerContext,
    Workload,
    plan_session,
)
from bench.player_checksums import OriginChecksums
from bench.playerstats import RunStats
from contracts.config import ConfigError, load_toml
from contracts.fleet import Fleet
from contracts.steer import SteerResponse

BENCH_KEYS = {
    "titles", "zipf_s", "abandon_p", "abandon_mean", "steering_url", "origin", "s3_endpoint",
    "fault_proxy", "cloudfront_url", "max_buffer", "request_timeout", "connect_timeout", "ramp",
    "clients", "players", "duration", "speed", "seed", "sessions", "procs",
}


@dataclass(slots=True)
class RunSettings:
    fleet: Fleet
    players: int
    duration: float
    workload: Workload
    steering_url: str
    speed: float = 1.0
    seed: int = 0
    sessions: int = 0  # sessions per player (0: as many as fit in duration)
    ramp: float = 5.0
    player: PlayerConfig = field(default_factory=PlayerConfig)
    origin: str = ""
    s3_endpoint: str = ""
    fault_proxy: str = ""
    cloudfront_url: str = ""
    faults: list[FaultAction] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # edge name -> pid, when known
    progress: bool = False
    procs: int = 1  # harness processes (players are split between them)


def bench_table(fleet: Fleet, scenario_bench: dict[str, Any] | None = None,
                flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """The merged [bench] settings: fleet file < scenario file < flags (None = not given)."""
    doc = load_toml(fleet.source).get("bench", {}) if fleet.source else {}
    out = dict(doc)
    out.update(scenario_bench or {})
    out.update({k: v for k, v in (flags or {}).items() if v is not None})
    unknown = set(out) - BENCH_KEYS
    if unknown:
        raise ConfigError(f"[bench]: unknown keys {sorted(unknown)}")
    return out


def build_settings(fleet: Fleet, b: dict[str, Any], titles: list[str],
                   faults: list[FaultAction]) -> RunSettings:
    """Validate the merged [bench] table into RunSettings; titles from config or the origin."""
    try:
        clients = tuple(
            ClientPrefix(str(c["prefix"]), float(c.get("weight", 1.0)), str(c.get("label", "")))
            for c in b.get("clients", [])
        )
        for c in clients:
            ipaddress.ip_network(c.prefix, strict=False)
            if c.weight < 0:
                raise ValueError(f"negative weight for {c.prefix}")
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"[bench] clients: {e}") from e
    if not clients:
        raise ConfigError("[bench] needs at least one [[bench.clients]] prefix")
    t = tuple(str(x) for x in (b.get("titles") or titles))
    if not t:
        raise ConfigError("no titles: list [bench] titles or give an origin to discover them")
    try:
        players = int(b.get("players", 10))
        duration = float(b.get("duration", 60))
        speed = float(b.get("speed", 1.0))
        wl = Workload(clients, t, float(b.get("zipf_s", 1.0)), float(b.get("abandon_p", 0.4)),
                      float(b.get("abandon_mean", 0.25)))
        pc = PlayerConfig(speed=speed, max_buffer_s=float(b.get("max_buffer", 30.0)),
                          request_timeout=float(b.get("request_timeout", 4.0)),
                          connect_timeout=float(b.get("connect_timeout", 1.0)))
        ramp = float(b.get("ramp", min(5.0, duration / 4)))
        seed = int(b.get("seed", 0))
        sessions = int(b.get("sessions", 0))
        procs = int(b.get("procs", 1))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[bench]: {e}") from e
    if players < 1 or duration <= 0 or speed <= 0 or sessions < 0 or ramp < 0 or procs < 1:
        raise ConfigError("players >= 1, duration > 0, speed > 0, sessions >= 0, ramp >= 0, "
                          "procs >= 1")
    if not 0 <= wl.abandon_p <= 1 or wl.abandon_mean <= 0:
        raise ConfigError("abandon_p in [0,1], abandon_mean > 0")
    steering = str(b.get("steering_url") or "")
    if not steering:
        listen = str(fleet.steering.get("listen", ""))
        if not listen:
            raise ConfigError("no steering URL: set [bench] steering_url or [steering] listen")
        steering = f"http://{listen}"
    validate_targets(faults, fleet)
    return RunSettings(
        fleet=fleet, players=players, duration=duration, workload=wl,
        steering_url=steering.rstrip("/"), speed=speed, seed=seed, sessions=sessions,
        ramp=ramp, player=pc, origin=str(b.get("origin") or fleet.origin.get("url", "")),
        s3_endpoint=str(b.get("s3_endpoint") or fleet.origin.get("endpoint_url", "")),
        fault_proxy=str(b.get("fault_proxy", "")), cloudfront_url=str(b.get("cloudfront_url", "")),
        faults=sorted(faults, key=lambda a: a.at), procs=min(procs, players),
    )


async def run_shard(s: RunSettings, checks: OriginChecksums, shard: int = 0, nshards: int = 1,
                    on_tick: Callable[[RunStats, float], None] | None = None,
                    start_at: float | None = None) -> tuple[RunStats, float]:
    """Players p with p % nshards == shard (and, on shard 0, the fault schedule).

    ``start_at`` (unix time) lines up the clocks of shards running in other processes.
    Returns the shard's stats and its wall time.
    """
    if start_at is not None and start_at > time.time():
        await asyncio.sleep(start_at - time.time())
    t0 = time.perf_counter()  # not loop.time(): uvloop caches it per loop iteration

    def now() -> float:
        return time.perf_counter() - t0

    stats = RunStats(bucket_seconds=bucket_seconds(s))
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, force_close=False)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                     read_bufsize=1 << 20) as http:
        steer_timeout = aiohttp.ClientTimeout(total=2.0, sock_connect=1.0)

        async def steer(path: str, client_ip: str) -> SteerResponse:
            async with http.get(f"{s.steering_url}/v1/steer",
                                params={"path": path, "client_ip": client_ip},
                                timeout=steer_timeout) as r:
                if r.status != 200:
                    raise ValueError(f"steering answered {r.status}")
                return SteerResponse.from_dict(await r.json())

        ctx = PlayerContext(http, stats, steer, checks.expected, s.player, now, s.duration,
                            s.cloudfront_url)

        async def slot(p: int) -> None:
            await asyncio.sleep(s.ramp * p / s.players)
            idx = 0
            while now() < s.duration and (not s.sessions or idx < s.sessions):
                plan = plan_session(s.seed, p, idx, s.workload)
                stats.sessions_started += 1
                stats.active_players += 1
                try:
                    res = await Player(plan, ctx).play()
                finally:
                    stats.active_players -= 1
                stats.session(res)
                idx += 1

        faults = None
        my_faults = s.faults if shard == 0 else []
        if my_faults:
            ctl = FaultController(s.fleet, http, s.steering_url, s.fault_proxy, s.pids)
            faults = asyncio.create_task(run_schedule(my_faults, ctl, now, stats.event))
        ticker = None
        if on_tick is not None:
            async def tick() -> None:
                while True:
                    on_tick(stats, now())
                    await asyncio.sleep(0.5)
            ticker = asyncio.create_task(tick())
        try:
            await asyncio.gather(*(slot(p) for p in range(shard, s.players, nshards)))
        finally:
            for task in (faults, ticker):
                if task is not None and not task.done():
                    task.cancel()
            for a in my_faults:
                if a.at >= now() and not any(e["what"] == a.describe() for e in stats.events):
                    stats.event(a.at, a.describe(), False, "not reached: run ended first")
    return stats, now()


def bucket_seconds(s: RunSettings) -> float:
    return min(1.0, max(0.05, round(s.duration / 100, 2)))


def run_info(s: RunSettings, checks: OriginChecksums, wall: float, started_at: float,
             procs: int = 1) -> dict[str, Any]:
    return {
        "seed": s.seed, "players": s.players, "duration": s.duration, "speed": s.speed,
        "sessions_per_player": s.sessions, "titles": list(s.workload.titles),
        "clients": [c.prefix for c in s.workload.clients], "steering_url": s.steering_url,
        "fleet": s.fleet.source, "checksums_known": len(checks.table), "procs": procs,
        "wall_seconds": round(wall, 3), "started_at": started_at,
    }


async def run_players(s: RunSettings, checks: OriginChecksums,
                      on_tick: Callable[[RunStats, float], None] | None = None) -> dict[str, Any]:
    """Run every player in this process (and the fault schedule); returns the report."""
    started_at = time.time()
    stats, wall = await run_shard(s, checks, 0, 1, on_tick)
    return stats.report(run_info(s, checks, wall, started_at))


def summary_lines(rep: dict[str, Any]) -> list[str]:
    """The few lines an operator reads first."""
    p, seg, hr = rep["plays"], rep["segments"], rep["hit_ratio"]
    lat, st, rb = rep["segment_latency_ms"], rep["startup_s"], rep["rebuffer"]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x * 100:.1f}%"

    def f(x: float | None, unit: str = "") -> str:
        return "n/a" if x is None else f"{x:.3g}{unit}"

    total = rep["bytes_total"] or 1
    lines = [
        f"plays: {p['sessions']} ({p['ok']} ok, {p['failed']} failed, {p['abandoned']} abandoned"
        f" early){'  reasons: ' + str(p['failed_reasons']) if p['failed'] else ''}",
        f"segments: {seg['played']} played, {seg['verified']} checksum-verified, "
        f"{seg['corrupt']} corrupt, {seg['short']} short",
        f"hit ratio: {pct(hr['byte'])} of bytes, {pct(hr['object'])} of objects",
        f"startup p50 {f(st['p50'], 's')} p99 {f(st['p99'], 's')}; rebuffers {rb['count']} "
        f"({rb['seconds']}s); segment latency p50 {f(lat['p50'], 'ms')} p99 {f(lat['p99'], 'ms')}",
        f"requests {rep['requests']['total']}, errors {rep['requests']['errors']}, "
        f"failovers {rep['requests']['failovers']}, re-steers {rep['requests']['resteers']}",
        f"throughput mean {rep['throughput']['mean_mbps']:.1f} Mbit/s, "
        f"peak {rep['throughput']['peak_mbps']:.1f} Mbit/s, {rep['bytes_total'] / 1e6:.1f} MB",
        "traffic by region: " + ", ".join(
            f"{k} {v / total * 100:.0f}%" for k, v in rep["bytes_by_region"].items()),
        "traffic by source: " + ", ".join(
            f"{k} {v['bytes'] / total * 100:.0f}%" for k, v in rep["sources"].items()),
    ]
    for e in rep["faults"]:
        detail = e["detail"] if len(e["detail"]) <= 60 else e["detail"][:57] + "..."
        lines.append(f"fault at {e['t']:.1f}s: {e['what']} -> {'ok' if e['ok'] else 'FAILED'}"
                     f" ({detail})")
    return lines
