"""``edgecdn bench serve``: argument parsing, rich progress and tables, JSON and PNG output."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import sys
from pathlib import Path

from bench import serve as sv
from bench import serve_servers as srv
from bench.serve_origin import SizeClass
from contracts.sizes import format_size, parse_size

LABELS = {
    "req_per_s": ("req/s", "{:,.0f}"),
    "gb_per_s": ("GB/s", "{:.2f}"),
    "p99_ms": ("p99 ms", "{:.2f}"),
    "cpu_s_per_gb": ("CPU s/GB", "{:.3f}"),
    "cpu_s_per_10k_req": ("CPU s/10k req", "{:.3f}"),
    "server_core_util": ("server core", "{:.0%}"),
    "wrk_core_util": ("wrk core", "{:.0%}"),
    "others_on_server_core": ("others on srv core", "{:.0%}"),
    "user_us_per_req": ("user us/req", "{:.1f}"),
    "sys_us_per_req": ("system us/req", "{:.1f}"),
    "blocks_per_req": ("blocks/req", "{:.3f}"),
    "preempted_per_req": ("preempted/req", "{:.4f}"),
}


def default_servers() -> str:
    return "nginx,edgecdn,edgecdn-w2" if srv.edge_available() else "nginx,ref"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="hit serving vs nginx proxy_cache (wrk, pinned cores)",
                       description=sv.__doc__)
    p.add_argument("--servers", default=None,
                   help=f"comma list of peers (known: {', '.join(srv.KNOWN)}; "
                        f"default: {default_servers()})")
    p.add_argument("--baseline", default="nginx", help="peer the ratios divide by")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured wrk seconds per peer")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--segment-size", default="2MiB")
    p.add_argument("--segments", type=int, default=16)
    p.add_argument("--object-size", default="16KiB")
    p.add_argument("--objects", type=int, default=256)
    p.add_argument("--only", choices=("segment", "object"), default=None,
                   help="measure one size class only")
    p.add_argument("--memory-cache", default="256MiB", help="edgecdn --memory-cache")
    p.add_argument("--disk-cache", default="2GiB", help="edgecdn --disk-cache")
    p.add_argument("--edge-args", default='--access-log ""',
                   help="extra flags for every `edgecdn edge` peer (default: no access log, as "
                        "nginx runs with access_log off)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                   help="an extra edgecdn peer with extra flags, e.g. "
                        "'nolog=--config x.toml'; list NAME in --servers (repeatable)")
    p.add_argument("--server-cpu", type=int, default=None, help="core for servers (default 1st)")
    p.add_argument("--load-cpu", type=int, default=None, help="core for wrk (default 2nd)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--plot", type=Path, default=None, metavar="OUT.png")
    p.set_defaults(func=main)


def config_from_args(a: argparse.Namespace) -> sv.BenchConfig:
    servers = [s.strip() for s in (a.servers or default_servers()).split(",") if s.strip()]
    variants = dict(srv.parse_variant(v) for v in a.variant)
    srv.resolve(servers, variants)  # unknown names fail here, before anything starts
    if a.rounds < 1 or a.duration < 1 or a.connections < 1:
        raise ValueError("--rounds, --duration and --connections must be at least 1")
    scpu, lcpu = sv.default_cpus()
    return sv.BenchConfig(
        servers=servers, baseline=a.baseline, rounds=a.rounds, duration_s=a.duration,
        warmup_s=a.warmup, connections=a.connections,
        classes=[c for c in (SizeClass("segment", parse_size(a.segment_size), a.segments),
                             SizeClass("object", parse_size(a.object_size), a.objects))
                 if a.only in (None, c.name)],
        server_cpu=scpu if a.server_cpu is None else a.server_cpu,
        load_cpu=lcpu if a.load_cpu is None else a.load_cpu,
        memory_cache=a.memory_cache, disk_cache=a.disk_cache,
        edge_args=shlex.split(a.edge_args), variants=variants)


def fmt(metric: str, v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return LABELS[metric][1].format(v)


def print_report(rep: sv.Report, console) -> None:
    from rich.table import Table

    sizes = {c["name"]: f'{c["name"]} {format_size(c["size"])}' for c in rep.config["classes"]}
    order = list(sizes)
    rows = sorted(rep.medians.items(), key=lambda kv: order.index(kv[0][1]))
    for title, metrics in (
            ("hit serving (medians over rounds; GB = 1e9 payload bytes)", sv.TABLE_METRICS),
            ("where the server's CPU goes per request (user/system: the kernel's tick-sampled "
             "split; blocks: times a thread waited, each a wakeup)", sv.SPLIT_METRICS)):
        t = Table(title=title)
        t.add_column("size")
        t.add_column("server")
        for m in metrics:
            t.add_column(LABELS[m][0], justify="right")
        for (server, sc), med in rows:
            t.add_row(sizes.get(sc, sc), server, *(fmt(m, med[m]) for m in metrics))
        console.print(t)
    if rep.ratios:
        r = Table(title="ratios (of medians; last column: the same ratio within each round)")
        r.add_column("pair")
        r.add_column("size")
        for m in sv.RATIO_METRICS:
            r.add_column(LABELS[m][0], justify="right")
        r.add_column("CPU/req, per round", justify="right")
        for pair, by_size in rep.ratios.items():
            for sc, vals in by_size.items():
                rounds = rep.paired.get(pair, {}).get(sc, {}).get("cpu_s_per_10k_req", [])
                spread = (f"{min(rounds):.2f}-{max(rounds):.2f}"
                          if rounds and not any(math.isnan(x) for x in rounds) else "-")
                r.add_row(pair, sc, *(f"{vals[m]:.2f}" for m in sv.RATIO_METRICS), spread)
        console.print(r)
    console.print(f"measured tree: {rep.config.get('source', '?')}")
    for tg in rep.targets:
        mark = {True: "[green]met[/]", False: "[red]NOT met[/]", None: "[dim]not measured[/]"}
        val = "-" if tg.value is None else f"{tg.value:.2f}"
        spread = ("" if tg.rounds_min is None
                  else f", single rounds {tg.rounds_min:.2f}-{tg.rounds_max:.2f}")
        if tg.rounds_ci is not None:
            spread += (f", their median {tg.rounds_median:.2f}"
                       f" (95% {tg.rounds_ci[0]:.2f}-{tg.rounds_ci[1]:.2f})")
        console.print(f"target {tg.name}: {val} (want {tg.limit}{spread}) {mark[tg.ok]}")


def plot(rep: sv.Report, out: Path) -> None:
    """One row per size class, one panel per metric, one bar per server (own scale each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = list(dict.fromkeys(s for s, _ in rep.medians))
    sizes = {c["name"]: f'{c["name"]} {format_size(c["size"])}' for c in rep.config["classes"]}
    rows = [sc for sc in sizes if any(k[1] == sc for k in rep.medians)]
    panels = ("req_per_s", "gb_per_s", "p99_ms", "cpu_s_per_gb", "cpu_s_per_10k_req")
    fig, axes = plt.subplots(len(rows), len(panels), figsize=(3.2 * len(panels), 3 * len(rows)),
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for r, sc in enumerate(rows):
        for c, m in enumerate(panels):
            ax = axes[r][c]
            ys = [rep.medians.get((s, sc), {}).get(m, float("nan")) for s in servers]
            ax.bar(range(len(servers)), ys, color=[colors[i % len(colors)]
                                                   for i in range(len(servers))])
            ax.set_xticks(range(len(servers)), servers, rotation=30, ha="right", fontsize=8)
            ax.set_title(f"{sizes[sc]}: {LABELS[m][0]}", fontsize=9)
    fig.suptitle(f"edgecdn bench serve: hit serving, median of {rep.config['rounds']} rounds "
                 f"({rep.config.get('source', '')})")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(a: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    out = Console()
    if not out.is_terminal:
        out = Console(width=150)  # a piped report should not wrap its columns
    try:
        cfg = config_from_args(a)
        plan = sv.check_deps(cfg)
    except (ValueError, sv.BenchError) as e:
        err.print(f"[red]bench serve:[/] {e}")
        return 2
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=err, transient=True) as prog:
            task = prog.add_task("starting", total=1)

            def progress(desc: str, done: int, total: int) -> None:
                prog.update(task, description=desc, completed=done, total=total)

            rep = sv.run(cfg, plan, progress)
    except (sv.BenchError, RuntimeError, OSError) as e:
        err.print(f"[red]bench serve failed:[/] {e}")
        return 1
    except KeyboardInterrupt:  # every process was stopped by run()'s cleanup
        err.print("bench serve: interrupted")
        return 130
    finally:
        shutil.rmtree(plan.workdir, ignore_errors=True)
    if a.json:
        json.dump(rep.to_json(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print_report(rep, out)
    if a.plot:
        plot(rep, a.plot)
        err.print(f"plot written to {a.plot}")
    return 0
