"""Per-run metrics, medians over rounds, ratios between peers and the issue's targets."""

from __future__ import annotations

import math
import statistics

import pytest

from bench import serve as sv
from bench.serve_servers import is_hit, resolve

MIB = 1024 * 1024


def sample(server: str, sc: str, size: int, rnd: int, requests: int, cpu: float,
           p99: float = 1.0, duration: float = 2.0) -> sv.Sample:
    return sv.Sample(server=server, size_class=sc, size=size, round=rnd, requests=requests,
                     duration_s=duration, bytes_read=requests * (size + 200), p99_ms=p99,
                     server_cpu_s=cpu, wrk_cpu_s=duration / 2, errors=0)


def test_sample_metrics_use_payload_bytes_and_server_cpu() -> None:
    m = sample("nginx", "segment", 2 * MIB, 0, requests=1000, cpu=0.5).metrics()
    gb = 1000 * 2 * MIB / 1e9
    assert m["req_per_s"] == pytest.approx(500)
    assert m["gb_per_s"] == pytest.approx(gb / 2)
    assert m["cpu_s_per_gb"] == pytest.approx(0.5 / gb)
    assert m["cpu_s_per_10k_req"] == pytest.approx(5.0)
    assert m["server_core_util"] == pytest.approx(0.25)
    assert m["wrk_core_util"] == pytest.approx(0.5)
    assert m["wire_bytes_per_req"] == pytest.approx(2 * MIB + 200)


def test_sample_with_no_requests_gives_nan_cost_not_an_error() -> None:
    m = sample("x", "object", 16384, 0, requests=0, cpu=0.1).metrics()
    assert math.isnan(m["cpu_s_per_gb"]) and math.isnan(m["cpu_s_per_10k_req"])


def test_medians_are_per_metric_over_rounds() -> None:
    rows = [sample("a", "object", 16384, r, n, cpu) for r, (n, cpu) in
            enumerate([(100, 0.1), (300, 0.9), (200, 0.2)])]
    med = sv.medians(rows)
    assert set(med) == {("a", "object")}
    assert med[("a", "object")]["req_per_s"] == pytest.approx(100)  # 200 requests / 2 s
    # per-sample cpu/10k: 10, 30, 10 -> median 10
    assert med[("a", "object")]["cpu_s_per_10k_req"] == pytest.approx(10)


def report_medians() -> dict:
    rows = []
    for rnd in range(3):
        rows += [sample("nginx", "segment", 2 * MIB, rnd, 1000, 0.4),
                 sample("edgecdn", "segment", 2 * MIB, rnd, 1000, 0.3),
                 sample("edgecdn-w2", "segment", 2 * MIB, rnd, 1000, 0.32),
                 sample("nginx", "object", 16384, rnd, 40000, 1.0),
                 sample("edgecdn", "object", 16384, rnd, 36000, 0.8),
                 sample("edgecdn-w2", "object", 16384, rnd, 36000, 1.0)]
    return sv.medians(rows)


def test_ratios_divide_medians_per_size_class() -> None:
    r = sv.ratios(report_medians(), "edgecdn", "nginx")
    assert set(r) == {"segment", "object"}
    assert r["segment"]["cpu_s_per_gb"] == pytest.approx(0.75)
    assert r["object"]["req_per_s"] == pytest.approx(0.9)
    assert r["object"]["p99_ms"] == pytest.approx(1.0)
    assert sv.ratios(report_medians(), "edgecdn", "absent") == {}
    assert math.isnan(sv.ratio(1.0, 0.0))


def test_targets_report_met_not_met_and_unmeasured() -> None:
    med = report_medians()
    rat = {"edgecdn/nginx": sv.ratios(med, "edgecdn", "nginx"),
           "edgecdn-w2/edgecdn": sv.ratios(med, "edgecdn-w2", "edgecdn")}
    cpu, rps, workers = sv.targets(rat)
    assert (cpu.ok, cpu.value) == (True, pytest.approx(0.75))
    assert (rps.ok, rps.value) == (False, pytest.approx(0.9))
    # worst size: objects cost 1.25x per request with 2 workers
    assert (workers.ok, workers.value) == (False, pytest.approx(1.25))
    assert all(t.ok is None and t.value is None for t in sv.targets({}))


@pytest.mark.parametrize(("kind", "value", "hit"), [
    ("nginx", "HIT", True), ("nginx", " hit ", True), ("nginx", "MISS", False),
    ("nginx", "EXPIRED", False), ("nginx", None, False),
    ("edgecdn", "edgecdn; hit", True), ("edgecdn", "edgecdn; hit; ttl=30", True),
    ("edgecdn", "edgecdn; fwd=miss; stored", False), ("edgecdn", "edgecdn; fwd=stale", False),
    ("edgecdn", "edgecdn; hit; fwd=uri-miss", False), ("edgecdn", "edgecdn", False),
    ("ref", "refserver; hit, upstream; fwd=miss", True), ("ref", "", False),
])
def test_is_hit_reads_rfc9211_and_nginx_status(kind: str, value: str | None, hit: bool) -> None:
    assert is_hit(kind, value) is hit


def test_resolve_rejects_unknown_peer_names() -> None:
    assert [p.workers for p in resolve(["edgecdn", "edgecdn-w2"])] == [1, 2]
    with pytest.raises(ValueError, match="unknown server 'varnish'"):
        resolve(["varnish"])


def test_variant_peers_are_edgecdn_with_extra_flags() -> None:
    from bench.serve_servers import parse_variant

    name, flags = parse_variant("nolog=--config 'a b.toml' --workers 2")
    assert (name, flags) == ("nolog", ["--config", "a b.toml", "--workers", "2"])
    (peer,) = resolve(["nolog"], {name: flags})
    assert (peer.kind, peer.workers, peer.extra) == ("edgecdn", 2, tuple(flags))
    for bad in ("nolog", "=--x", "nginx=--x", "a/b=--x"):
        with pytest.raises(ValueError, match="bad --variant"):
            parse_variant(bad)


def test_variant_from_another_source_tree(tmp_path) -> None:
    from bench.serve_servers import parse_variant

    name, flags = parse_variant(f"old=@{tmp_path} --no-sendfile")
    with pytest.raises(ValueError, match="not an edgecdn source tree"):
        resolve([name], {name: flags})
    (tmp_path / "edgecdn").mkdir()
    (tmp_path / "edgecdn" / "cli.py").write_text("")
    (peer,) = resolve([name], {name: flags})
    assert (peer.src, peer.extra) == (str(tmp_path), ("--no-sendfile",))


def test_others_on_server_core_is_core_busy_minus_server_and_json_has_no_nan() -> None:
    s = sample("nginx", "object", 16384, 0, requests=1000, cpu=0.5)
    s.core_busy_s = 1.5
    assert s.metrics()["others_on_server_core"] == pytest.approx(0.5)  # (1.5 - 0.5) / 2 s
    s.core_busy_s = 0.4  # tick rounding can put the core below the server: clamp at 0
    assert s.metrics()["others_on_server_core"] == 0.0
    rep = sv.Report({}, [sample("a", "object", 16384, 0, requests=0, cpu=0.1)],
                    sv.medians([sample("a", "object", 16384, 0, requests=0, cpu=0.1)]), {}, [])
    import json

    text = json.dumps(rep.to_json(), allow_nan=False)  # raises on NaN
    assert '"cpu_s_per_gb": null' in text


def test_paired_ratios_are_per_round_and_feed_the_target_spread() -> None:
    rows = []
    for rnd, (w1, w2) in enumerate([(1.0, 1.1), (1.0, 1.5), (2.0, 2.0)]):
        rows += [sample("edgecdn", "object", 16384, rnd, 10000, w1),
                 sample("edgecdn-w2", "object", 16384, rnd, 10000, w2)]
    p = sv.paired_ratios(rows, "edgecdn-w2", "edgecdn")
    assert p["object"]["cpu_s_per_10k_req"] == pytest.approx([1.1, 1.5, 1.0])
    assert sv.paired_ratios(rows, "edgecdn-w2", "absent") == {}
    med = sv.medians(rows)
    rat = {"edgecdn-w2/edgecdn": sv.ratios(med, "edgecdn-w2", "edgecdn")}
    *_, w = sv.targets(rat, {"edgecdn-w2/edgecdn": p})
    assert w.value == pytest.approx(1.5 / 1.0)  # medians: w2 1.5, w1 1.0
    assert (w.rounds_min, w.rounds_max) == (pytest.approx(1.0), pytest.approx(1.5))
    assert w.rounds_median == pytest.approx(1.1)
    assert w.rounds_ci is not None and 1.0 <= w.rounds_ci[0] <= 1.1 <= w.rounds_ci[1] <= 1.5
    assert w.ok is False


def test_the_median_interval_narrows_with_rounds_and_is_reproducible() -> None:
    import random

    rng = random.Random(7)
    few = [1.05 + rng.uniform(-0.15, 0.15) for _ in range(8)]
    many = [1.05 + rng.uniform(-0.15, 0.15) for _ in range(128)]
    lo8, hi8 = sv.median_interval(few)
    lo128, hi128 = sv.median_interval(many)
    assert lo8 <= statistics.median(few) <= hi8 and lo128 <= 1.05 <= hi128
    assert hi128 - lo128 < hi8 - lo8  # more rounds, a tighter interval
    assert sv.median_interval(few) == (lo8, hi8)  # seeded


def test_ratio_pairs_put_each_two_worker_peer_against_its_one_worker_self() -> None:
    names = ["nginx", "nginx-w2", "edgecdn", "edgecdn-w2", "ref-sendfile-w2"]
    assert sv.ratio_pairs(names, "nginx") == [
        ("nginx-w2", "nginx"), ("edgecdn", "nginx"), ("edgecdn-w2", "nginx"),
        ("ref-sendfile-w2", "nginx"), ("edgecdn-w2", "edgecdn")]
    # without the baseline peer: only the worker pairs; a -w2 peer alone has no pair
    assert sv.ratio_pairs(["edgecdn", "edgecdn-w2", "ref-w2"], "nginx") == [
        ("edgecdn-w2", "edgecdn")]
    assert resolve(["nginx-w2"])[0].workers == 2
