"""/healthz, /metrics, /admin/purge, URL tokens and the access log spool."""

from __future__ import annotations

import json
import time

from contracts.logs import AccessRecord
from contracts.reports import EdgeReport
from contracts.tokens import sign, token_query
from tests.edge.server.conftest import CHUNK, fetch, payload

CC = {"Cache-Control": "max-age=300", "ETag": '"o"'}


async def test_healthz_is_an_edge_report(origin, make_edge, client):
    origin.put("/h.ts", payload(CHUNK), headers=CC)
    edge = make_edge(origin.url, edge={"capacity_mbps": 800})
    await fetch(client, edge.url + "/h.ts")
    await fetch(client, edge.url + "/h.ts")
    edge.settle()
    r = await fetch(client, edge.url + "/healthz")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    rep = EdgeReport.from_dict(json.loads(r.body))
    assert rep.status == "ok"
    assert rep.active_connections >= 1
    assert rep.capacity_bps == 100e6
    assert rep.hit_ratio == 0.5
    assert rep.tiers["disk"].capacity_bytes == 64 * 1024**2
    assert rep.tiers["disk"].used_bytes >= CHUNK


async def test_metrics_count_requests_bytes_origin_and_tiers(origin, make_edge, client):
    origin.put("/m.ts", payload(2 * CHUNK), headers=CC)
    edge = make_edge(origin.url)
    await fetch(client, edge.url + "/m.ts")
    await fetch(client, edge.url + "/m.ts")
    r = await fetch(client, edge.url + "/metrics")
    assert r.status == 200
    text = r.body.decode()
    assert 'edgecdn_requests_total{cache="hit"} 1.0' in text
    assert 'edgecdn_requests_total{cache="miss"} 1.0' in text
    assert "edgecdn_origin_fetches_total 2.0" in text
    assert "edgecdn_origin_first_byte_seconds_count 2.0" in text
    assert f"edgecdn_bytes_sent_total {4 * CHUNK}.0" in text
    assert 'edgecdn_tier_used_bytes{tier="disk"}' in text
    assert 'edgecdn_evictions_total{tier="disk"}' in text or "edgecdn_evictions" in text


async def test_purge_needs_the_bearer_token_and_purges(origin, make_edge, client):
    origin.put("/p/a.ts", b"A" * 100, headers=CC)
    origin.put("/p/b.ts", b"B" * 100, headers=CC)
    edge = make_edge(origin.url)
    for p in ("/p/a.ts", "/p/b.ts"):
        await fetch(client, edge.url + p)
    url = edge.url + "/admin/purge"
    r = await fetch(client, url, "POST", data=b'{"key": "/p/a.ts"}')
    assert r.status == 401
    r = await fetch(client, url, "POST", headers={"Authorization": "Bearer wrong"},
                    data=b'{"key": "/p/a.ts"}')
    assert r.status == 401
    auth = {"Authorization": "Bearer sekrit"}
    r = await fetch(client, url, "POST", headers=auth, data=b"not json")
    assert r.status == 400
    r = await fetch(client, url, "POST", headers=auth, data=b'{"key": "/p/../etc"}')
    assert r.status == 400
    r = await fetch(client, url, "GET", headers=auth)
    assert r.status == 405
    n0 = origin.count("/p/a.ts")
    r = await fetch(client, url, "POST", headers=auth, data=b'{"key": "/p/a.ts"}')
    assert r.status == 200 and json.loads(r.body)["purged"] == 1
    r = await fetch(client, edge.url + "/p/a.ts")
    assert "fwd=miss" in r.cache and origin.count("/p/a.ts") == n0 + 1
    # soft purge by prefix: kept, but revalidated (304) before reuse
    r = await fetch(client, url, "POST", headers=auth, data=b'{"prefix": "/p/", "soft": true}')
    assert r.status == 200 and json.loads(r.body)["purged"] == 2
    r = await fetch(client, edge.url + "/p/b.ts")
    assert r.body == b"B" * 100 and "fwd-status=304" in r.cache


async def test_admin_on_separate_listener_only(origin, make_edge, client, port):
    edge = make_edge(origin.url, edge={"admin_listen": f"127.0.0.1:{port}"})
    auth = {"Authorization": "Bearer sekrit"}
    r = await fetch(client, edge.url + "/admin/purge", "POST", headers=auth,
                    data=b'{"prefix": "/x/"}')
    assert r.status == 404
    r = await fetch(client, f"http://127.0.0.1:{port}/admin/purge", "POST", headers=auth,
                    data=b'{"prefix": "/x/"}')
    assert r.status == 200
    r = await fetch(client, f"http://127.0.0.1:{port}/x/content")
    assert r.status == 404


async def test_tokens_required_403_with_reason(origin, make_edge, client):
    origin.put("/titles/t1/r/seg_00001.ts", b"T" * 100, headers=CC)
    edge = make_edge(origin.url, tokens={"required": True,
                                         "secrets": {"k1": "s-one", "k2": "s-two"}})
    path = "/titles/t1/r/seg_00001.ts"
    now = int(time.time())
    r = await fetch(client, edge.url + path)
    assert r.status == 403 and b"missing token" in r.body
    expired = sign(b"s-one", "k1", "/titles/t1/", now - 10)
    r = await fetch(client, f"{edge.url}{path}?{token_query(expired)}")
    assert r.status == 403 and b"expired" in r.body
    bad = sign(b"wrong", "k1", "/titles/t1/", now + 60)
    r = await fetch(client, f"{edge.url}{path}?{token_query(bad)}")
    assert r.status == 403 and b"signature" in r.body
    other = sign(b"s-one", "k1", "/titles/t2/", now + 60)
    r = await fetch(client, f"{edge.url}{path}?{token_query(other)}")
    assert r.status == 403 and b"does not cover" in r.body
    for kid, secret in (("k1", b"s-one"), ("k2", b"s-two")):  # both kids active at once
        good = sign(secret, kid, "/titles/t1/", now + 60)
        r = await fetch(client, f"{edge.url}{path}?{token_query(good)}")
        assert r.status == 200 and r.body == b"T" * 100
    # the token is not part of the cache key: one origin fetch for both tokens
    assert origin.count(path) == 1
    assert all("token" not in (h.get("Range") or "") for _, _, h in origin.requests)


async def test_access_log_spool_files_rotate_to_ready(origin, make_edge, client, tmp_path):
    origin.put("/l.ts", b"L" * 1000, headers=CC)
    log_file = tmp_path / "access.jsonl"
    edge = make_edge(origin.url, cache_dir=tmp_path / "c",
                     log={"access": str(log_file), "rotate_seconds": 0.05})
    await fetch(client, edge.url + "/l.ts", headers={"Range": "bytes=0-9"})
    await fetch(client, edge.url + "/l.ts")
    edge.call(edge.node.ops.flush_log_now)
    time.sleep(0.06)
    edge.call(edge.node.ops.flush_log_now)  # rotates the spool file: closed and renamed
    lines = log_file.read_text().splitlines()
    recs = [AccessRecord.from_json(line) for line in lines]
    assert [(r.status, r.bytes, r.cache, r.range) for r in recs] == [
        (206, 10, "miss", "bytes=0-9"), (200, 1000, "hit", "")]
    assert recs[0].path == "/l.ts" and recs[0].client == "127.0.0.1" and recs[0].dur_ms >= 0
    spool = tmp_path / "c" / "logs"
    ready = sorted(spool.glob("access-*.ready"))
    assert ready and not list(spool.glob("*.jsonl"))
    spooled = [AccessRecord.from_json(x) for p in ready for x in p.read_text().splitlines()]
    assert [r.status for r in spooled] == [206, 200]


async def test_disk_full_keeps_serving_without_storing_and_says_so(origin, make_edge, client):
    import errno

    body = payload(3 * CHUNK)
    origin.put("/full.ts", body, headers=CC)
    edge = make_edge(origin.url, cache={"memory": "0"})

    def enospc(op: str, path: str) -> None:
        if op in ("create", "write", "meta", "rename", "fsync"):
            raise OSError(errno.ENOSPC, "No space left on device")

    edge.node.store.cfg.fault_hook = enospc
    for _ in range(2):
        r = await fetch(client, edge.url + "/full.ts")
        assert r.status == 200 and r.body == body
        assert "hit" not in r.cache.split("; ")
    edge.settle()
    rep = EdgeReport.from_dict(json.loads((await fetch(client, edge.url + "/healthz")).body))
    assert rep.status == "degraded" and rep.tiers["disk"].full
    assert any("disk full" in x for x in rep.reasons)


async def test_peer_fill_answers_only_from_the_store(origin, make_edge, client):
    body = payload(3 * CHUNK)
    origin.put("/pf.ts", body, headers=CC)
    edge = make_edge(origin.url)
    pf = {"X-Edgecdn-Peer-Fill": "1", "Cache-Control": "only-if-cached"}
    r = await fetch(client, edge.url + "/pf.ts", headers=pf)
    assert r.status == 404 and origin.count("/pf.ts") == 0  # never asks the origin
    await fetch(client, edge.url + "/pf.ts", headers={"Range": "bytes=0-10"})  # chunk 0 only
    edge.settle()
    r = await fetch(client, edge.url + "/pf.ts", headers=pf)
    assert r.status == 404  # not every chunk is here
    r = await fetch(client, edge.url + "/pf.ts", headers={**pf, "Range": f"bytes=0-{CHUNK - 1}"})
    assert r.status == 206 and r.body == body[:CHUNK] and r.headers["etag"] == '"o"'
    assert origin.count("/pf.ts") == 1
