"""`edgecdn steer` as a real process: config file, ready line, HTTP + DNS, decision log, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.message

from contracts.steer import SteerResponse
from tests.steering.conftest import StandInEdge, fleet_doc, write_fleet_toml

ROOT = Path(__file__).resolve().parents[2]


async def start_steer(config: Path, *extra: str) -> tuple[asyncio.subprocess.Process, dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgecdn.cli", "steer", "--config", str(config),
        "--listen", "127.0.0.1:0", *extra, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    return proc, json.loads(line)


async def test_steer_process_serves_http_and_dns_and_logs_decisions(
        edges: dict[str, StandInEdge], mmdb_path: Path, cf_key, tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    doc = fleet_doc({n: e.url for n, e in edges.items()},
                    {"geoip_db": str(mmdb_path), "decision_log": str(log),
                     "dns_name": "v.example."}, cf_key[0])
    cfg = write_fleet_toml(tmp_path / "fleet.toml", doc)
    proc, ready = await start_steer(cfg, "--dns", "127.0.0.1:0")
    try:
        assert ready["steering"] == "ready" and ready["dns_port"]
        async with aiohttp.ClientSession() as s:
            url = f"http://127.0.0.1:{ready['http_port']}/v1/steer"
            async with s.get(url, params={"path": "/titles/t/master.m3u8",
                                          "client_ip": "203.0.113.9"}) as r:
                resp = SteerResponse.from_dict(await r.json())
        assert resp.targets[0].site == "nyc" and resp.targets[-1].kind == "cloudfront"
        q = dns.message.make_query("v.example.", "A")
        a = await dns.asyncquery.udp(q, "127.0.0.1", port=ready["dns_port"], timeout=3)
        assert a.answer
        t0 = time.monotonic()
        while not (log.exists() and log.read_text().strip()):
            assert time.monotonic() - t0 < 5, "no decision log line"
            await asyncio.sleep(0.05)
        rec = json.loads(log.read_text().splitlines()[0])
        assert rec["client"] == "203.0.113.9" and rec["site"] == "nyc" and rec["cloudfront"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def run_cli(cfg: Path) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgecdn.cli", "steer", "--config", str(cfg), "--listen",
        "127.0.0.1:0", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, err


async def test_bad_configs_exit_2_with_a_reason(tmp_path: Path) -> None:
    region = '[[regions]]\nname = "r"\n[[regions.sites]]\nname = "s"\nlat = 1\nlon = 2\n'
    (tmp_path / "junk.mmdb").write_bytes(b"not a database")
    cases = {
        "shed_low": "[steering]\nshed_low = 2.0\n" + region,
        "nope": '[steering]\nweights = { nope = 5 }\n' + region,
        "junk.mmdb": f'[steering]\ngeoip_db = "{tmp_path / "junk.mmdb"}"\n' + region,
        "unknown keys": "[steering]\nlisten_here = 1\n" + region,
        "private key": region + '[cloudfront]\ndomain = "d.net"\nkey_pair_id = "K"\n'
                                'private_key = "missing.pem"\n',
    }
    for want, text in cases.items():
        cfg = tmp_path / "fleet.toml"
        cfg.write_text(text)
        code, err = await run_cli(cfg)
        assert code == 2 and want.encode() in err, (want, err)


async def test_listen_address_in_use_exits_2(edges, tmp_path: Path) -> None:
    import socket

    doc = fleet_doc({n: e.url for n, e in edges.items()})
    cfg = write_fleet_toml(tmp_path / "fleet.toml", doc)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgecdn.cli", "steer", "--config", str(cfg), "--listen",
            f"127.0.0.1:{port}", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and b"edgecdn steer:" in err
