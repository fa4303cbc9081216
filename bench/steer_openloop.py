"""Open-loop HTTP load at a fixed rate (wrk2-style), for latency at a given rate.

Requests are issued on a fixed schedule (request i at ``t0 + i / rate``, round-robin over
the connections, pipelined when a connection still waits for an answer), whatever the
server does; each latency counts from the request's *scheduled* time. A server stall then
shows in full in the percentiles, instead of pausing the load tool as closed-loop tools do
(coordinated omission). Also reported: latency from the actual send, and how late the pacer
itself ran (its timer has ~1 ms granularity, and it shares a core with other work), so a
late client is not mistaken for a slow server.

Run as its own process (pinned to the load core by the caller)::

    python -m bench.steer_openloop PORT RATE DURATION CONNECTIONS PATHS_JSON

prints one JSON line. A plain asyncio protocol: no HTTP library on the hot path.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass

_CL = b"content-length:"


@dataclass
class OpenLoopResult:
    rate_target: float
    duration_s: float  # scheduling window
    scheduled: int
    completed: int
    errors: int  # non-2xx answers, plus requests with no answer by the drain deadline
    achieved_rate: float  # completed / (last answer - t0)
    p50_ms: float  # from the scheduled time (what a client at this rate sees)
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    p99_send_ms: float  # from the actual send (service time plus queueing on the server)
    pacer_late_p99_ms: float  # how late the pacer sent, 99th percentile (client-side lag)


class _Stats:
    __slots__ = ("lat", "lat_send", "last")

    def __init__(self) -> None:
        self.lat: list[float] = []  # seconds from scheduled time, 2xx answers
        self.lat_send: list[float] = []
        self.last = 0.0  # perf_counter of the last answer


class _Conn(asyncio.Protocol):
    __slots__ = ("transport", "pending", "buf", "stats", "errors")

    def __init__(self, stats: _Stats) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: deque[tuple[float, float]] = deque()  # (scheduled, sent) in order
        self.buf = bytearray()
        self.stats = stats
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.errors += len(self.pending)
        self.pending.clear()
        self.transport = None

    def send(self, req: bytes, scheduled: float, sent: float) -> bool:
        if self.transport is None:
            return False
        self.pending.append((scheduled, sent))
        self.transport.write(req)
        return True

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            i = head.find(_CL)
            n = 0
            if i >= 0:
                j = head.find(b"\r\n", i)
                n = int(head[i + len(_CL):j if j >= 0 else len(head)])
            total = end + 4 + n
            if len(buf) < total:
                return
            now = time.perf_counter()
            ok = head[9:10] == b"2"
            del buf[:total]
            if not self.pending:  # an answer nobody asked for
                self.errors += 1
                continue
            scheduled, sent = self.pending.popleft()
            st = self.stats
            st.last = now
            if ok:
                st.lat.append(now - scheduled)
                st.lat_send.append(now - sent)
            else:
                self.errors += 1


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


async def run(host: str, port: int, rate: float, duration: float, connections: int,
              paths: list[str], drain_s: float = 2.0) -> OpenLoopResult:
    if rate <= 0 or duration <= 0 or connections < 1 or not paths:
        raise ValueError("need rate > 0, duration > 0, connections >= 1 and some paths")
    loop = asyncio.get_running_loop()
    stats = _Stats()
    late: list[float] = []
    conns: list[_Conn] = []
    for _ in range(connections):
        _, c = await loop.create_connection(lambda: _Conn(stats), host, port)
        conns.append(c)
    reqs = [f"GET {p} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for p in paths]
    total = int(rate * duration)
    period = 1.0 / rate
    perf = time.perf_counter
    t0 = perf() + 0.01
    n = unsent = 0
    while n < total:
        now = perf()
        due = min(total, int((now - t0) * rate) + 1)
        if due > n:
            late.append(now - (t0 + n * period))  # the oldest request of this batch
        while n < due:
            c = conns[n % connections]
            if not c.send(reqs[n % len(reqs)], t0 + n * period, now):
                unsent += 1
            n += 1
        wait = t0 + n * period - perf()
        if wait > 0:
            await asyncio.sleep(wait)
    deadline = perf() + drain_s
    while any(c.pending for c in conns) and perf() < deadline:
        await asyncio.sleep(0.005)
    errors = unsent + sum(c.errors + len(c.pending) for c in conns)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    lat, lat_send = sorted(stats.lat), sorted(stats.lat_send)
    late.sort()
    span = max(duration, stats.last - t0)
    return OpenLoopResult(
        rate_target=rate, duration_s=duration, scheduled=total, completed=len(lat),
        errors=errors, achieved_rate=round(len(lat) / span, 1),
        p50_ms=round(_pct(lat, 0.50), 3), p90_ms=round(_pct(lat, 0.90), 3),
        p99_ms=round(_pct(lat, 0.99), 3), p999_ms=round(_pct(lat, 0.999), 3),
        max_ms=round(lat[-1] * 1000 if lat else 0.0, 3),
        p99_send_ms=round(_pct(lat_send, 0.99), 3),
        pacer_late_p99_ms=round(_pct(late, 0.99), 3))


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("usage: python -m bench.steer_openloop PORT RATE DURATION CONNECTIONS PATHS_JSON",
              file=sys.stderr)
        return 2
    port, rate, duration, conns = int(argv[0]), float(argv[1]), float(argv[2]), int(argv[3])
    with open(argv[4]) as f:
        paths = json.load(f)
    try:
        import uvloop

        res = uvloop.run(run("127.0.0.1", port, rate, duration, conns, paths))
    except ImportError:  # pragma: no cover - uvloop is a dependency
        res = asyncio.run(run("127.0.0.1", port, rate, duration, conns, paths))
    print(json.dumps(asdict(res)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
