"""wrk output parsing: wrk's own text report and our Lua script's exact JSON line."""

from __future__ import annotations

import math

import pytest

from bench import wrk

REPORT = """Running 1s test @ http://127.0.0.1:18302/bench/object/object_00000.bin
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   172.24us  343.38us   6.42ms   96.64%
    Req/Sec    46.82k    12.60k   70.45k    80.00%
  Latency Distribution
     50%  120.00us
     75%  143.00us
     90%  198.00us
     99%    1.82ms
  46487 requests in 1.00s, 732.17MB read
Requests/sec:  46459.96
Transfer/sec:    731.74MB
"""

ERRORS = """Running 2s test @ http://127.0.0.1:1/x
  1 threads and 8 connections
  Latency Distribution
     50%    1.50s
     99%    2.00s
  779 requests in 2.01s, 34.23KB read
  Socket errors: connect 3, read 1, write 0, timeout 7
  Non-2xx or 3xx responses: 779
Requests/sec:    387.05
Transfer/sec:     17.02KB
"""


def test_parse_text_reads_counts_bytes_and_percentiles_in_their_units() -> None:
    r = wrk.parse_text(REPORT)
    assert r.requests == 46487
    assert r.duration_s == pytest.approx(1.0)
    assert r.bytes_read == int(732.17 * 1024**2)
    assert r.p50_us == pytest.approx(120.0)
    assert r.p99_us == pytest.approx(1820.0)
    assert r.total_errors == 0
    assert r.req_per_s == pytest.approx(46487)


def test_parse_text_counts_socket_errors_and_non_2xx_with_seconds_latency() -> None:
    r = wrk.parse_text(ERRORS)
    assert r.errors == {"connect": 3, "read": 1, "write": 0, "timeout": 7}
    assert r.non_2xx == 779
    assert r.total_errors == 790
    assert r.p50_us == pytest.approx(1.5e6)
    assert r.p99_us == pytest.approx(2e6)
    assert r.bytes_read == int(34.23 * 1024)


def test_parse_text_without_latency_distribution_gives_nan_percentiles() -> None:
    text = "\n".join(line for line in REPORT.splitlines() if "%  " not in line)
    r = wrk.parse_text(text)
    assert math.isnan(r.p99_us)
    assert r.requests == 46487


def test_parse_text_rejects_output_without_summary() -> None:
    with pytest.raises(wrk.WrkError):
        wrk.parse_text("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_mark_line_wins_over_rounded_text() -> None:
    line = ('EDGECDN_WRK {"duration_us":3093798,"requests":1871,"bytes":3926311895,"connect":0,'
            '"read":2,"write":0,"status":5,"timeout":1,"p50_us":25515.0,"p99_us":142550.0}')
    r = wrk.parse_output(REPORT + line + "\n")
    assert r.requests == 1871
    assert r.bytes_read == 3926311895
    assert r.duration_s == pytest.approx(3.093798)
    assert r.p99_us == 142550.0
    assert r.errors == {"connect": 0, "read": 2, "write": 0, "timeout": 1}
    assert r.non_2xx == 5
    assert r.total_errors == 8


def test_parse_output_falls_back_to_text() -> None:
    assert wrk.parse_mark(REPORT) is None
    assert wrk.parse_output(REPORT).requests == 46487


def test_lua_script_lists_every_path_quoted() -> None:
    s = wrk.lua_script(["/a/b.bin", '/q"uote'])
    assert '"/a/b.bin"' in s and '"/q\\"uote"' in s
    assert "latency:percentile(99)" in s and wrk.MARK.strip() in s
    with pytest.raises(ValueError):
        wrk.lua_script([])


def test_command_pins_with_taskset_and_asks_for_latency(tmp_path) -> None:
    cmd = wrk.command("/usr/bin/wrk", "http://127.0.0.1:1", tmp_path / "s.lua",
                      connections=16, duration_s=2.4, cpu=1)
    assert cmd[1:3] == ["-c", "1"] and cmd[0].endswith("taskset")
    assert "--latency" in cmd and "-c16" in cmd and "-d2s" in cmd and "-t1" in cmd
    assert wrk.command("wrk", "u", tmp_path, connections=1, duration_s=0.2)[0] == "wrk"
