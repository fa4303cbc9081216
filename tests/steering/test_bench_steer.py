"""`edgecdn bench steer` end to end at a tiny scale (python load tool: no wrk needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_steer_json_smoke() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgecdn.cli", "bench", "steer", "--edges", "20", "--regions",
         "4", "--connections", "4", "--duration", "1", "--warmup", "0", "--titles", "5", "--repeat", "1",
         "--tool", "python", "--server-cores", "", "--client-cores", "", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    r = json.loads(out.stdout)
    assert r["edges"] == 20 and r["requests"] > 0 and r["errors"] == 0
    assert r["sample_targets"] >= 3  # edges from two sites + CloudFront
    assert r["p99_ms"] >= r["p50_ms"] > 0 and r["server_cpu_s"] > 0
