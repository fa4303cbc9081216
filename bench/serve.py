"""``edgecdn bench serve``: hit serving, edgecdn beside nginx proxy_cache, in one run.

Every peer runs pinned to the server core with wrk pinned to the other, serves the same
content (2 MiB segments and 16 KiB objects from a local origin), is warmed until every
path is a verified hit, and is measured in interleaved rounds (the order flips each round,
since run-to-run spread here is large); each figure is the median over rounds.

The server's CPU is read from /proc for its whole process tree before each wrk run and once
the server has settled after it (every thread's schedstat, in nanoseconds; settled = at most
2% of a core over 1.2 s): work a load leaves behind, such as access lines formatted at the next
second's tick, counts for that load and not for whichever run comes next. On a 2-core machine
wrk often saturates first, so CPU per GB and per 10,000 requests are the figures to compare,
not raw throughput.
"""

from __future__ import annotations

import http.client
import math
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import procstat
from bench import serve_servers as srv
from bench import wrk as wrkmod
from bench.serve_origin import SizeClass, content, write_tree

MISSING_DEPS = ("{what} not found on PATH: run `make bench-deps` "
                "(installs the nginx-light and wrk system packages)")


@dataclass
class BenchConfig:
    servers: list[str]
    baseline: str | None = "nginx"
    rounds: int = 3
    duration_s: float = 5.0
    warmup_s: float = 1.0
    connections: int = 32
    classes: list[SizeClass] = field(default_factory=lambda: [
        SizeClass("segment", 2 * 1024 * 1024, 16), SizeClass("object", 16 * 1024, 256)])
    server_cpu: int | None = None
    load_cpu: int | None = None
    memory_cache: str = "256MiB"
    disk_cache: str = "2GiB"
    edge_args: list[str] = field(default_factory=list)  # extra flags for `edgecdn edge`
    variants: dict[str, list[str]] = field(default_factory=dict)  # name -> extra edge flags


@dataclass
class Sample:
    """One wrk run against one peer for one size class."""

    server: str
    size_class: str
    size: int
    round: int
    requests: int
    duration_s: float
    bytes_read: int
    p99_ms: float
    server_cpu_s: float  # during the run and until the server settled after it
    wrk_cpu_s: float
    errors: int
    core_busy_s: float = float("nan")  # the server core's busy time, whoever used it
    tail_cpu_s: float = 0.0  # the part of server_cpu_s spent after wrk stopped
    # the server's CPU split (tick-sampled) and how its threads left the core, same window
    user_s: float = float("nan")
    sys_s: float = float("nan")
    blocked: int = 0  # voluntary switches: a thread waited (each is a wakeup later)
    preempted: int = 0  # involuntary switches

    @property
    def payload_gb(self) -> float:
        return self.requests * self.size / 1e9

    def metrics(self) -> dict[str, float]:
        d, gb, n = self.duration_s, self.payload_gb, self.requests
        return {
            "req_per_s": n / d if d else 0.0,
            "gb_per_s": gb / d if d else 0.0,
            "p99_ms": self.p99_ms,
            "cpu_s_per_gb": self.server_cpu_s / gb if gb else float("nan"),
            "cpu_s_per_10k_req": self.server_cpu_s / n * 1e4 if n else float("nan"),
            "server_core_util": self.server_cpu_s / d if d else 0.0,
            "wrk_core_util": self.wrk_cpu_s / d if d else 0.0,
            # share of the server's core used by other processes (a shared machine's noise)
            "others_on_server_core": max(
                0.0, (self.core_busy_s - (self.server_cpu_s - self.tail_cpu_s)) / d)
            if d else 0.0,
            # all bytes wrk read per counted request: headers, plus the bytes of responses
            # still in flight when the run stopped (large for 2 MiB with many connections)
            "wire_bytes_per_req": self.bytes_read / n if n else float("nan"),
            # where each request's server CPU goes: user (the server's code) vs system
            # (syscalls, the TCP stack), and wakeups (blocks) and preemptions per request
            "user_us_per_req": self.user_s / n * 1e6 if n else float("nan"),
            "sys_us_per_req": self.sys_s / n * 1e6 if n else float("nan"),
            "blocks_per_req": self.blocked / n if n else float("nan"),
            "preempted_per_req": self.preempted / n if n else float("nan"),
        }


TABLE_METRICS = ("req_per_s", "gb_per_s", "p99_ms", "cpu_s_per_gb", "cpu_s_per_10k_req",
                 "server_core_util", "wrk_core_util", "others_on_server_core")
SPLIT_METRICS = ("user_us_per_req", "sys_us_per_req", "blocks_per_req", "preempted_per_req")
METRICS = (*TABLE_METRICS, "wire_bytes_per_req", *SPLIT_METRICS)
RATIO_METRICS = ("req_per_s", "gb_per_s", "p99_ms", "cpu_s_per_gb", "cpu_s_per_10k_req")


def medians(samples: list[Sample]) -> dict[tuple[str, str], dict[str, float]]:
    """Per (server, size class): the median of each metric over rounds."""
    groups: dict[tuple[str, str], list[dict[str, float]]] = {}
    for s in samples:
        groups.setdefault((s.server, s.size_class), []).append(s.metrics())
    return {k: {m: statistics.median(r[m] for r in rows) for m in METRICS}
            for k, rows in groups.items()}


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def ratios(med: dict[tuple[str, str], dict[str, float]], num: str, den: str
           ) -> dict[str, dict[str, float]]:
    """Per size class: num/den of each ratio metric (of medians)."""
    out: dict[str, dict[str, float]] = {}
    for (server, sc), m in med.items():
        if server != num or (den, sc) not in med:
            continue
        out[sc] = {k: ratio(m[k], med[(den, sc)][k]) for k in RATIO_METRICS}
    return out


Paired = dict[str, dict[str, list[float]]]  # size class -> metric -> ratio per round


def paired_ratios(samples: list[Sample], num: str, den: str) -> Paired:
    """num/den within each round (peers of a round ran seconds apart): the spread of these
    shows how far a ratio of medians can be trusted on a shared machine."""
    by = {(s.server, s.size_class, s.round): s.metrics() for s in samples}
    out: Paired = {}
    for (server, sc, rnd), m in sorted(by.items(), key=lambda kv: kv[0][2]):
        d = by.get((den, sc, rnd))
        if server != num or d is None:
            continue
        per = out.setdefault(sc, {k: [] for k in RATIO_METRICS})
        for k in RATIO_METRICS:
            per[k].append(ratio(m[k], d[k]))
    return out


@dataclass
class Target:
    name: str
    value: float | None
    limit: str
    ok: bool | None  # None: not measured in this run
    rounds_min: float | None = None  # the same ratio within single rounds: its spread
    rounds_max: float | None = None
    rounds_median: float | None = None  # their median, and a 95% bootstrap interval of it:
    rounds_ci: tuple[float, float] | None = None  # how sure a verdict near the limit is


def median_interval(values: list[float], resamples: int = 2000, seed: int = 0
                    ) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the median (seeded: the same rounds always give
    the same interval)."""
    import random

    rng = random.Random(seed)
    n = len(values)
    meds = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    return meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1]


def targets(all_ratios: dict[str, dict[str, dict[str, float]]],
            paired: dict[str, Paired] | None = None) -> list[Target]:
    """The issue's targets, from the ratios (of medians) this run measured."""
    paired = paired or {}
    vs = all_ratios.get("edgecdn/nginx", {})
    w2 = all_ratios.get("edgecdn-w2/edgecdn", {})

    def t(name: str, v: float | None, limit: str, ok: Callable[[float], bool],
          rounds: list[float]) -> Target:
        rounds = [x for x in rounds if not math.isnan(x)]
        if not rounds:
            return Target(name, v, limit, None if v is None else ok(v))
        return Target(name, v, limit, None if v is None else ok(v), min(rounds), max(rounds),
                      statistics.median(rounds), median_interval(rounds))

    def rounds_of(pair: str, sc: str, metric: str) -> list[float]:
        return paired.get(pair, {}).get(sc, {}).get(metric, [])

    cpu_gb = vs.get("segment", {}).get("cpu_s_per_gb")
    rps = vs.get("object", {}).get("req_per_s")
    per_req = {sc: w2[sc]["cpu_s_per_10k_req"] for sc in w2}
    worst = max(per_req, key=lambda sc: per_req[sc]) if per_req else ""
    return [
        t("edgecdn/nginx CPU per GB, 2 MiB segments", cpu_gb, "<= 1.0", lambda v: v <= 1.0,
          rounds_of("edgecdn/nginx", "segment", "cpu_s_per_gb")),
        t("edgecdn/nginx req/s, 16 KiB objects", rps, ">= 1.0", lambda v: v >= 1.0,
          rounds_of("edgecdn/nginx", "object", "req_per_s")),
        t("workers 2/1 CPU per request (worst size)", per_req.get(worst), "<= 1.10",
          lambda v: v <= 1.10, rounds_of("edgecdn-w2/edgecdn", worst, "cpu_s_per_10k_req")),
    ]


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


class BenchError(RuntimeError):
    pass


def warm(r: srv.Running, classes: list[SizeClass], attempts: int = 20) -> None:
    """Request every path until the peer reports a hit with the right bytes, or fail."""
    hdr = r.peer.cache_header.lower()
    for sc in classes:
        for path in sc.paths():
            want = content(path, sc.size)
            for i in range(attempts):
                status, headers, body = http_get(r.port, path)
                if status != 200 or body != want:
                    raise BenchError(f"{r.peer.name} {path}: status {status}, "
                                     f"{len(body)} bytes (want 200 and {sc.size} exact bytes)")
                if srv.is_hit(r.peer.kind, headers.get(hdr)):
                    break
                if i >= 2:  # an asynchronous store may need a moment to commit
                    time.sleep(0.02 * i)
            else:
                raise BenchError(f"{r.peer.name} never reported a hit for {path} "
                                 f"({r.peer.cache_header}: {headers.get(hdr)!r})")


def verify_hits(r: srv.Running, classes: list[SizeClass]) -> None:
    hdr = r.peer.cache_header.lower()
    for sc in classes:
        for path in sc.paths()[:: max(1, sc.count // 8)]:
            _, headers, body = http_get(r.port, path)
            if not srv.is_hit(r.peer.kind, headers.get(hdr)) or len(body) != sc.size:
                raise BenchError(f"{r.peer.name} {path} was not a full hit after the run "
                                 f"({r.peer.cache_header}: {headers.get(hdr)!r})")


@dataclass
class Plan:
    """What ``run`` needs besides the config: binaries and where things go."""

    wrk_bin: str
    nginx_bin: str | None
    workdir: Path


def measure(r: srv.Running, sc: SizeClass, script: Path, plan: Plan, cfg: BenchConfig,
            rnd: int, duration_s: float) -> Sample:
    cmd = wrkmod.command(plan.wrk_bin, r.url, script, connections=cfg.connections,
                         duration_s=duration_s, cpu=cfg.load_cpu)
    core = cfg.server_cpu
    # the previous run settled before it was read, so its leftovers are not counted here
    busy0 = procstat.cpu_busy_ticks(core) if core is not None else 0
    use0 = procstat.tree_usage(r.proc.pid)
    before = procstat.tree_cpu_ns(r.proc.pid)
    res, wrk_cpu = wrkmod.run(cmd, timeout=duration_s + 30)
    busy = (procstat.ticks_to_seconds(procstat.cpu_busy_ticks(core) - busy0)
            if core is not None else float("nan"))
    stopped = procstat.tree_cpu_ns(r.proc.pid)
    after = procstat.settle(r.proc.pid, since=stopped)  # what the load left counts too
    use = procstat.tree_usage(r.proc.pid) - use0
    if r.proc.poll() is not None:
        raise BenchError(f"{r.peer.name} died during the run:\n{r.log_tail()}")
    return Sample(server=r.peer.name, size_class=sc.name, size=sc.size, round=rnd,
                  requests=res.requests, duration_s=res.duration_s, bytes_read=res.bytes_read,
                  p99_ms=res.p99_us / 1e3, server_cpu_s=(after - before) / 1e9,
                  wrk_cpu_s=wrk_cpu, errors=res.total_errors, core_busy_s=busy,
                  tail_cpu_s=(after - stopped) / 1e9,
                  user_s=procstat.ticks_to_seconds(use.user_ticks),
                  sys_s=procstat.ticks_to_seconds(use.sys_ticks),
                  blocked=use.voluntary, preempted=use.involuntary)


@dataclass
class Report:
    config: dict
    samples: list[Sample]
    medians: dict[tuple[str, str], dict[str, float]]
    ratios: dict[str, dict[str, dict[str, float]]]
    targets: list[Target]
    paired: dict[str, Paired] = field(default_factory=dict)

    def to_json(self) -> dict:
        """Plain JSON (NaN, which strict parsers reject, becomes null)."""
        return _no_nan({
            "config": self.config,
            "results": [{"server": s, "size_class": sc, **m}
                        for (s, sc), m in self.medians.items()],
            "ratios": self.ratios,
            "paired_ratios_per_round": self.paired,
            "targets": [asdict(t) for t in self.targets],
            "samples": [{**asdict(s), **s.metrics()} for s in self.samples],
        })


def _no_nan(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _no_nan(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_no_nan(x) for x in v]
    return v


Progress = Callable[[str, int, int], None]  # (description, done, total)


def default_cpus() -> tuple[int, int]:
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[0], cpus[1] if len(cpus) > 1 else cpus[0]


def run(cfg: BenchConfig, plan: Plan, progress: Progress = lambda *a: None) -> Report:
    """Start the origin and every peer, warm and verify, measure interleaved, stop all."""
    peers = srv.resolve(cfg.servers, cfg.variants)
    root = plan.workdir / "origin"
    write_tree(root, cfg.classes)
    running: list[srv.Running] = []
    origin = None
    try:
        progress("starting origin", 0, 1)
        origin = srv.start_origin(root, plan.workdir / "origin.log")
        origin_url = origin.url
        for p in peers:
            progress(f"starting {p.name}", 0, 1)
            running.append(srv.start(p, origin_url, plan.workdir / p.name, cpu=cfg.server_cpu,
                                     memory_cache=cfg.memory_cache, disk_cache=cfg.disk_cache,
                                     nginx_bin=plan.nginx_bin,
                                     edge_args=tuple(cfg.edge_args)))
        scripts = {}
        for sc in cfg.classes:
            scripts[sc.name] = plan.workdir / f"{sc.name}.lua"
            scripts[sc.name].write_text(wrkmod.lua_script(sc.paths()))
        for r in running:
            progress(f"warming {r.peer.name}", 0, 1)
            warm(r, cfg.classes)
            if cfg.warmup_s > 0:
                for sc in cfg.classes:
                    measure(r, sc, scripts[sc.name], plan, cfg, -1, cfg.warmup_s)
            warm(r, cfg.classes, attempts=1)  # still all hits after the load warm-up
        samples: list[Sample] = []
        total = cfg.rounds * len(cfg.classes) * len(running)
        for rnd in range(cfg.rounds):
            order = running if rnd % 2 == 0 else running[::-1]
            for sc in cfg.classes:
                for r in order:
                    progress(f"round {rnd + 1}/{cfg.rounds} {sc.name} {r.peer.name}",
                             len(samples), total)
                    s = measure(r, sc, scripts[sc.name], plan, cfg, rnd, cfg.duration_s)
                    if s.errors:
                        raise BenchError(f"{r.peer.name}: {s.errors} wrk errors/non-2xx on "
                                         f"{sc.name}:\n{r.log_tail()}")
                    samples.append(s)
        progress("verifying hits", total, total)
        for r in running:
            verify_hits(r, cfg.classes)
    finally:
        for r in running:
            srv.stop(r)
        if origin is not None:
            srv.stop(origin)
    med = medians(samples)
    names = [p.name for p in peers]
    pairs = ratio_pairs(names, cfg.baseline)
    rat = {f"{a}/{b}": ratios(med, a, b) for a, b in pairs}
    paired = {f"{a}/{b}": paired_ratios(samples, a, b) for a, b in pairs}
    conf = {k: v for k, v in asdict(cfg).items() if k != "classes"}
    conf["classes"] = [asdict(c) for c in cfg.classes]
    conf["clk_tck"] = procstat.CLK_TCK
    conf["source"] = source_version()
    return Report(conf, samples, med, rat, targets(rat, paired), paired)


def ratio_pairs(names: list[str], baseline: str | None) -> list[tuple[str, str]]:
    """The (peer, divisor) pairs a report gives ratios for: every peer against the baseline,
    and each two-worker peer (NAME-w2) against its one-worker self, whose ratio is the cost
    of two workers taking turns on one core."""
    pairs = [(n, baseline) for n in names if baseline in names and n != baseline]
    for n in names:
        one = n.removesuffix("-w2")
        if one != n and one in names and (n, one) not in pairs:
            pairs.append((n, one))
    return pairs  # type: ignore[return-value]


def source_version() -> str:
    """The tree being measured (commit, and "+dirty" with uncommitted changes), for the record."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "edge", "contracts"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def check_deps(cfg: BenchConfig, path: str | None = None) -> Plan:
    """Find wrk (and nginx when a peer needs it) or raise with the make target to run."""
    from bench.nginx import find_nginx

    wrk_bin = wrkmod.find_wrk(path)
    if wrk_bin is None:
        raise BenchError(MISSING_DEPS.format(what="wrk"))
    nginx_bin = find_nginx(path)
    if nginx_bin is None and any(p.kind == "nginx" for p in srv.resolve(cfg.servers, cfg.variants)):
        raise BenchError(MISSING_DEPS.format(what="nginx"))
    return Plan(wrk_bin, nginx_bin, Path(tempfile.mkdtemp(prefix="edgecdn-bench-serve-")))
