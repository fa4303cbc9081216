"""Run wrk and read its results: a Lua script varies the paths and prints exact figures.

wrk's own text rounds (``3.84GB read``); the script's ``done()`` prints one JSON line with
the exact request and byte counts and latency percentiles, which is what the bench uses.
The text parser is kept as the fallback and for wrk runs without our script.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

MARK = "EDGECDN_WRK "


class WrkError(RuntimeError):
    """wrk failed or printed something we cannot read."""


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    bytes_read: int
    p50_us: float
    p99_us: float
    errors: dict[str, int] = field(default_factory=dict)
    non_2xx: int = 0

    @property
    def req_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values()) + self.non_2xx


def lua_script(paths: list[str]) -> str:
    """A wrk script cycling through ``paths`` with prebuilt requests and a JSON ``done``."""
    if not paths:
        raise ValueError("need at least one path")
    items = ",".join(json.dumps(p) for p in paths)  # JSON strings are valid Lua strings here
    return f"""
local paths = {{{items}}}
local reqs = {{}}
local i = 0
init = function(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p) end
  i = math.random(#reqs) - 1
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{MARK}{{"duration_us":%.0f,"requests":%.0f,"bytes":%.0f,"connect":%.0f,"read":%.0f,' ..
    '"write":%.0f,"status":%.0f,"timeout":%.0f,"p50_us":%.1f,"p99_us":%.1f}}\\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def parse_mark(text: str) -> WrkResult | None:
    """The result from our script's JSON line, or None if the output has none."""
    for line in text.splitlines():
        if line.startswith(MARK):
            d = json.loads(line[len(MARK):])
            errors = {k: int(d[k]) for k in ("connect", "read", "write", "timeout")}
            return WrkResult(
                requests=int(d["requests"]),
                duration_s=d["duration_us"] / 1e6,
                bytes_read=int(d["bytes"]),
                p50_us=float(d["p50_us"]),
                p99_us=float(d["p99_us"]),
                errors=errors,
                non_2xx=int(d["status"]),
            )
    return None


_TIME = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_SUMMARY = re.compile(
    r"(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)(B|KB|MB|GB|TB) read")
_PCT = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_SOCK = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_text(text: str) -> WrkResult:
    """Parse wrk's own report (``--latency`` for percentiles); sizes are binary units."""
    m = _SUMMARY.search(text)
    if not m:
        raise WrkError(f"no summary line in wrk output: {text[-300:]!r}")
    pct = {p: float(v) * _TIME[u] for p, v, u in _PCT.findall(text)}
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    if s := _SOCK.search(text):
        errors = dict(zip(errors, map(int, s.groups()), strict=True))
    n2 = _NON2XX.search(text)
    return WrkResult(
        requests=int(m.group(1)),
        duration_s=float(m.group(2)) * _TIME[m.group(3)] / 1e6,
        bytes_read=int(float(m.group(4)) * _BYTES[m.group(5)]),
        p50_us=pct.get("50", float("nan")),
        p99_us=pct.get("99", float("nan")),
        errors=errors,
        non_2xx=int(n2.group(1)) if n2 else 0,
    )


def parse_output(text: str) -> WrkResult:
    return parse_mark(text) or parse_text(text)


def find_wrk(path: str | None = None) -> str | None:
    return shutil.which("wrk", path=path)


def command(wrk: str, url: str, script: Path, *, connections: int, duration_s: float,
            threads: int = 1, cpu: int | None = None) -> list[str]:
    """The wrk command line, pinned to ``cpu`` with taskset when given."""
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
           "--latency", "--timeout", "5s", "-s", str(script), url]
    if cpu is not None and (ts := shutil.which("taskset")):
        cmd = [ts, "-c", str(cpu), *cmd]
    return cmd


def run(cmd: list[str], timeout: float) -> tuple[WrkResult, float]:
    """Run wrk to completion; its parsed result and the CPU seconds wrk itself used.

    wrk's own CPU tells whether the load tool, not the server, was the bottleneck.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode != 0:
        raise WrkError(f"wrk exited {p.returncode}: {stderr.strip() or stdout[-300:]}")
    return parse_output(stdout), ru.ru_utime + ru.ru_stime
