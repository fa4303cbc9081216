"""The PNG report of a player run, drawn from the JSON report alone (matplotlib, Agg).

Four panels: throughput and hit ratio over time; segment latency distribution; bytes by
site over time; bytes by region over time. Faults are vertical lines on the time panels,
so a failover or an evacuation shows as a picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _smooth(xs: list[float], n: int) -> list[float]:
    """Trailing moving average over n buckets (segment fetches are bursty)."""
    if n <= 1:
        return xs
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= n:
            acc -= xs[i - n]
        out.append(acc / min(i + 1, n))
    return out


def plot_report(rep: dict[str, Any], out: str | Path, smooth_s: float = 2.0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = rep.get("timeline", [])
    ts = [b["t"] for b in tl]
    bucket = float(rep.get("bucket_seconds") or 1.0)
    n = max(1, round(smooth_s / bucket))
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    ax_tp, ax_lat = axes[0]
    ax_site, ax_reg = axes[1]
    run = rep.get("run", {})
    fig.suptitle(
        f"edgecdn players: {run.get('players')} players, seed {run.get('seed')}, "
        f"speed {run.get('speed')}x, {rep['plays']['sessions']} plays "
        f"({rep['plays']['failed']} failed), {rep['segments']['corrupt']} corrupt"
    )

    mbps = _smooth([b["bytes"] * 8 / 1e6 / bucket for b in tl], n)
    ax_tp.plot(ts, mbps, color="tab:blue", label="throughput")
    ax_tp.set_xlabel("seconds")
    ax_tp.set_ylabel("Mbit/s")
    ax_tp.set_title(f"Throughput and hit ratio ({n * bucket:g}s average)")
    ax_hr = ax_tp.twinx()
    sb = _smooth([float(b["bytes"]) for b in tl], n)
    sh = _smooth([float(b["hit_bytes"]) for b in tl], n)
    hr = [h / b if b else float("nan") for h, b in zip(sh, sb, strict=True)]
    ax_hr.plot(ts, hr, color="tab:green", label="byte hit ratio")
    ax_hr.set_ylim(0, 1.05)
    ax_hr.set_ylabel("byte hit ratio")
    lines = ax_tp.get_lines() + ax_hr.get_lines()
    ax_tp.legend(lines, [ln.get_label() for ln in lines], loc="lower right")

    h = rep.get("latency_histogram", {})
    edges, counts = h.get("edges_ms", []), h.get("counts", [])
    if edges and any(counts):
        lo = [edges[0] / 2, *edges]
        widths = [hi - lo_ for lo_, hi in zip(lo, [*edges, edges[-1] * 2], strict=True)]
        ax_lat.bar(lo, counts, width=widths, align="edge", color="tab:purple")
        ax_lat.set_xscale("log")
    lat = rep.get("segment_latency_ms", {})
    for q, style in (("p50", "--"), ("p99", ":")):
        if lat.get(q) is not None:
            ax_lat.axvline(lat[q], color="black", linestyle=style, label=f"{q} {lat[q]:.1f} ms")
    ax_lat.set_title("Segment latency")
    ax_lat.set_xlabel("ms (log)")
    ax_lat.set_ylabel("segments")
    if lat.get("p50") is not None:
        ax_lat.legend()

    for ax, key, title in ((ax_site, "by_site", "Traffic by site"),
                           (ax_reg, "by_region", "Traffic by region")):
        names = sorted({n for b in tl for n in b.get(key, {})})
        if names:
            ys = [_smooth([b.get(key, {}).get(k, 0) * 8 / 1e6 / bucket for b in tl], n)
                  for k in names]
            ax.stackplot(ts, ys, labels=names, alpha=0.85)
            ax.legend(loc="upper left", fontsize="small", ncol=2)
        ax.set_title(title)
        ax.set_xlabel("seconds")
        ax.set_ylabel("Mbit/s")

    for e in rep.get("faults", []):
        for ax in (ax_tp, ax_site, ax_reg):
            ax.axvline(e["t"], color="red" if e["ok"] else "grey", linestyle="--", alpha=0.7)
        ax_reg.annotate(e["what"], (e["t"], 0), xycoords=("data", "axes fraction"),
                        rotation=90, va="bottom", ha="right", fontsize="small", color="red")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
