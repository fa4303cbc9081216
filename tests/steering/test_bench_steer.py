"""`edgecdn bench steer` end to end at a tiny scale (python load tool: no wrk needed), and the
open-loop load generator against a server that stalls on purpose."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from bench.steer_openloop import run

ROOT = Path(__file__).resolve().parents[2]


def test_bench_steer_json_smoke() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgecdn.cli", "bench", "steer", "--edges", "20", "--regions",
         "4", "--connections", "4", "--duration", "1", "--warmup", "0", "--titles", "5",
         "--repeat", "1", "--tool", "python", "--server-cores", "", "--client-cores", "",
         "--rate", "300", "--no-naive", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    r = json.loads(out.stdout)
    assert r["edges"] == 20 and r["requests"] > 0 and r["errors"] == 0
    assert r["sample_targets"] >= 3  # edges from two sites + CloudFront
    assert r["p99_ms"] >= r["p50_ms"] > 0 and r["server_cpu_s"] > 0
    assert r["paced_rate_target"] == 300 and r["paced_errors"] == 0
    assert 250 <= r["paced_decisions_per_s"] <= 330
    assert r["paced_p999_ms"] >= r["paced_p99_ms"] >= r["paced_p50_ms"] > 0


class StallingServer(asyncio.Protocol):
    """Answers every request at once, except that the first request after ``stall_at``
    answers (with every one queued behind it) only ``stall_s`` later."""

    stall_at = 0.0
    stall_s = 0.0
    stalled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.queue: list[bytes] = []
        self.held = False

    def data_received(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"] * data.count(b"\r\n\r\n")
        cls = type(self)
        if not cls.stalled and loop.time() >= cls.stall_at:
            cls.stalled = True
            self.held = True
            loop.call_later(cls.stall_s, self._release)
        if self.held:
            self.queue += answers
        else:
            self.transport.write(b"".join(answers))

    def _release(self) -> None:
        self.held = False
        self.transport.write(b"".join(self.queue))


async def test_open_loop_latency_counts_a_stall_from_the_scheduled_time() -> None:
    """One connection (as one player would see it) at 500/s stalls for 0.3 s: every request
    scheduled during the stall waits (15% of them, 0-300 ms), so the 90th percentile is
    ~100 ms. A closed-loop tool sends nothing while it waits and would count one slow
    request (its p90 would be well under a millisecond)."""
    loop = asyncio.get_running_loop()
    StallingServer.stall_at, StallingServer.stall_s = loop.time() + 0.4, 0.3
    srv = await loop.create_server(StallingServer, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        r = await run("127.0.0.1", port, rate=500, duration=2.0, connections=1,
                      paths=["/a", "/b"])
    finally:
        srv.close()
    assert r.errors == 0 and r.completed == r.scheduled == 1000
    assert 0.28 <= r.max_ms / 1000 <= 0.5
    assert r.p90_ms > 50  # ~150 requests of 1000 were scheduled inside the stall
    assert r.p50_ms < 50 and 450 <= r.achieved_rate <= 520
