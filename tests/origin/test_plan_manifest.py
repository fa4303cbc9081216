from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path

import boto3
import pytest

from contracts.fleet import load_fleet
from contracts.manifest import (
    Manifest,
    ManifestEntry,
    ManifestError,
    edge_manifest_key,
    site_manifest_key,
)
from contracts.placement import edges_for
from contracts.rendezvous import rank
from edgecdn.cli import main

FLEET = """
[origin]
url = "s3://{bucket}/pfx"
logs_prefix = "logs/"
manifests_prefix = "manifests/"

[[regions]]
name = "eu"
  [[regions.sites]]
  name = "lon"
  lat = 51.5
  lon = -0.1
  disk = "{disk}"
    [[regions.sites.edges]]
    name = "lon-1"
    url = "http://127.0.0.1:1"
    [[regions.sites.edges]]
    name = "lon-2"
    url = "http://127.0.0.1:2"
    [[regions.sites.edges]]
    name = "lon-3"
    url = "http://127.0.0.1:3"
  [[regions.sites]]
  name = "ams"
  lat = 52.4
  lon = 4.9
  disk = "{disk}"
    [[regions.sites.edges]]
    name = "ams-1"
    url = "http://127.0.0.1:4"
"""


def _fleet(tmp_path: Path, bucket: str, disk: str = "200KiB") -> Path:
    p = tmp_path / "fleet.toml"
    p.write_text(FLEET.format(bucket=bucket, disk=disk))
    return p


def _setup_origin_and_logs(s3, bucket: str, now: float) -> tuple[dict[str, int], set[str]]:
    """20 titles x 10 segments of varied sizes at the origin; Zipf-ish logs from lon only."""
    rng = random.Random(3)
    sizes = {}
    for t in range(20):
        for s in range(10):
            path = f"/titles/t{t:02d}/480p/seg_{s:05d}.ts"
            sizes[path] = rng.randrange(2_000, 12_000)
            s3.put_object(Bucket=bucket, Key="pfx" + path, Body=b"x" * sizes[path])
    lines = []
    logged = set()
    for _ in range(5000):
        t = min(int(rng.paretovariate(1.2)) - 1, 19)
        s = min(int(rng.expovariate(0.4)), 9)
        logged.add(f"/titles/t{t:02d}/480p/seg_{s:05d}.ts")
        lines.append(json.dumps({
            "ts": now - rng.uniform(0, 7200), "client": "1.2.3.4", "method": "GET",
            "path": f"/titles/t{t:02d}/480p/seg_{s:05d}.ts?token=x", "status": 200,
            "bytes": 5000, "cache": "hit", "dur_ms": 1.0, "edge": "lon-1", "site": "lon",
        }))
    lines.append(json.dumps({"ts": now, "client": "", "method": "GET", "path": "/titles/gone/a.ts",
                             "status": 200, "bytes": 1, "cache": "miss", "dur_ms": 1}))
    s3.put_object(Bucket=bucket, Key=f"logs/lon/lon-1/{int(now)}-1-0.jsonl.gz",
                  Body=gzip.compress("\n".join(lines).encode()))
    return sizes, logged


def _get(s3, bucket: str, key: str) -> Manifest:
    return Manifest.from_json(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_plan_fills_budgets_by_popularity_with_steering_rendezvous(
        tmp_path: Path, s3_endpoint: str, s3_bucket: str, capsys) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    now = time.time()
    sizes, logged = _setup_origin_and_logs(s3, s3_bucket, now)
    fleet_file = _fleet(tmp_path, s3_bucket)
    assert main(["fill", "plan", "--fleet", str(fleet_file), "--endpoint-url", s3_endpoint,
                 "--half-life", "1h", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["logs"]["counted"] == 5001
    fleet = load_fleet(fleet_file)
    budget = 200 * 1024
    for site in fleet.sites:
        m = _get(s3, s3_bucket, f"manifests/{site.name}.json")
        assert site_manifest_key("manifests/", site.name) == f"manifests/{site.name}.json"
        names = [e.name for e in site.edges]
        assert m.entries and m.budget == budget
        used = dict.fromkeys(names, 0)
        for e in m.entries:
            assert "/gone/" not in e.path  # not at the origin: never planned
            assert e.size == sizes[e.path]
            assert list(e.edges) == rank(f"/titles/{e.path.split('/')[2]}/", names)[:1]  # steering's placement
            assert list(e.edges) == edges_for(e.path, names)[:1]
            used[e.edges[0]] += e.size
        assert all(u <= budget for u in used.values())
        # greedy is tight: anything requested but left out did not fit on its edge
        planned = {e.path for e in m.entries}
        assert planned <= logged
        for path, size in sizes.items():
            if path in logged and path not in planned:
                edge = rank(f"/titles/{path.split('/')[2]}/", names)[0]
                assert used[edge] + size > budget, path
        for name in names:
            em = _get(s3, s3_bucket, edge_manifest_key("manifests/", site.name, name))
            assert em.edge == name
            assert [e.path for e in em.entries] == [e.path for e in m.entries if name in e.edges]
            assert [e.rank for e in em.entries] == list(range(1, len(em.entries) + 1))
            assert set(em.peers) == set(names) - {name}
    lon = _get(s3, s3_bucket, "manifests/lon.json")
    # the most requested object (title t00, first segment) is ranked first
    assert lon.entries[0].path == "/titles/t00/480p/seg_00000.ts"
    # ams has no logs of its own: it is filled from its region's popularity
    ams = _get(s3, s3_bucket, "manifests/ams.json")
    assert ams.entries[0].path == lon.entries[0].path

    show = ["fill", "show", "--fleet", str(fleet_file), "--endpoint-url", s3_endpoint]
    assert main([*show, "--site", "lon", "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{len(lon.entries)} objects" in out and lon.entries[0].path in out
    assert main([*show, "--site", "lon", "--edge", "lon-2", "--json"]) == 0
    assert Manifest.from_json(capsys.readouterr().out).edge == "lon-2"
    assert main([*show, "--site", "nowhere"]) == 2


def test_plan_refuses_bad_flags(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    fleet_file = _fleet(tmp_path, s3_bucket)
    base = ["fill", "plan", "--fleet", str(fleet_file), "--endpoint-url", s3_endpoint]
    assert main([*base, "--half-life", "soon"]) == 2
    assert main([*base, "--replicas", "0"]) == 2
    assert main(["fill", "plan", "--fleet", str(tmp_path / "nope.toml")]) == 2


def _manifest() -> Manifest:
    return Manifest("lon", 1000, [
        ManifestEntry("/titles/a/x.ts", 400, 1, ("lon-1",), "abc", 3.5),
        ManifestEntry("/titles/b/x.ts", 500, 2, ("lon-1", "lon-2")),
    ], 1700000000.0, "eu", half_life=3600.0)


def test_manifest_round_trip_and_edge_share() -> None:
    m = _manifest()
    back = Manifest.from_json(m.to_json())
    assert back == m
    share = m.for_edge("lon-2", {"lon-1": "http://a"})
    assert [e.path for e in share.entries] == ["/titles/b/x.ts"] and share.entries[0].rank == 1
    assert Manifest.from_json(share.to_json()) == share
    assert m.bytes_for("lon-1") == 900


@pytest.mark.parametrize("mutate, why", [
    (lambda d: d.update(version=2), "version"),
    (lambda d: d.pop("site"), "site"),
    (lambda d: d.update(budget=-1), "budget"),
    (lambda d: d.update(budget=800), "over budget"),
    (lambda d: d["entries"][1].update(rank=1), "not increasing"),
    (lambda d: d["entries"][1].update(path="/titles/a/x.ts"), "duplicate"),
    (lambda d: d["entries"][0].update(path="/titles/../etc/passwd"), "bad path"),
    (lambda d: d["entries"][0].update(path="titles/a"), "bad path"),
    (lambda d: d["entries"][0].update(size="400"), "size"),
    (lambda d: d["entries"][0].update(edges=[]), "edges"),
    (lambda d: d.update(entries={}), "entries"),
    (lambda d: d.update(peers={"x": "ftp://a"}), "peers"),
    (lambda d: d.update(edge="lon-2"), "not assigned"),
    (lambda d: d.update(generated_at="now"), "generated_at"),
])
def test_manifest_validation_rejects(mutate, why: str) -> None:
    d = _manifest().to_dict()
    mutate(d)
    with pytest.raises(ManifestError, match=why):
        Manifest.from_dict(d)


def test_manifest_rejects_non_json() -> None:
    with pytest.raises(ManifestError):
        Manifest.from_json(b"\xff{")
    with pytest.raises(ManifestError):
        Manifest.from_json("[]")


def test_replicas_place_each_title_on_its_top_edges_within_budget() -> None:
    from contracts.fleet import Edge, Site
    from origin.plan import OriginObject, origin_objects, plan_site

    edges = tuple(Edge(f"e{i}", f"http://127.0.0.1:{i + 1}", "s", "r", 1e9) for i in range(3))
    site = Site("s", "r", 0.0, 0.0, 50_000, edges)
    objects = {f"/titles/t{t}/a/seg_{s:05d}.ts": OriginObject(1000 + t, None)
               for t in range(40) for s in range(5)}
    ranked = [(p, 1.0 / (i + 1)) for i, p in enumerate(objects)]
    m = plan_site(site, ranked, objects, 0.0, replicas=2)
    names = [e.name for e in edges]
    assert m.entries and all(list(e.edges) == edges_for(e.path, names)[:2] for e in m.entries)
    assert all(m.bytes_for(n) <= 50_000 for n in names)
    assert max(m.bytes_for(n) for n in names) > 45_000  # budgets are used, not left idle
    rows = [{"Key": "p/titles/a/x.ts", "Size": 5, "ETag": '"e1"'},
            {"Key": "p/titles/../x.ts", "Size": 5}, {"Key": "other/x.ts", "Size": 1}]
    assert origin_objects(rows, "p/") == {"/titles/a/x.ts": OriginObject(5, "e1")}
