"""Trace-driven simulation of eviction policies: read a trace once, feed every policy.

The same policy classes the edge runs (``edge.policy``) are driven exactly as the edge store
drives them (see ``edge.policy.base``).  Requests are broadcast to every policy in batches, as
Caffeine's simulator does, so one pass over the trace serves any number of policies.

Trace format: CSV lines ``time,key,size`` with no header; the key is any string (it may contain
commas: the first field is the time and the last the size).  When one key appears with
different sizes, each (key, size) pair is a different object, as the AdaptSize trace needs:
the first size seen keeps the plain key, later sizes become ``key~size``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from contracts.sizes import parse_size
from edge.policy import Policy, make_policy

BATCH = 8192


class TraceError(ValueError):
    """A trace line that cannot be read, with its line number."""


@dataclass
class Trace:
    name: str
    keys: list[str] = field(repr=False)
    sizes: list[int] = field(repr=False)
    unique_objects: int
    unique_bytes: int

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)


def parse_trace(lines: Iterable[str], name: str = "trace") -> Trace:
    """A Trace from CSV lines; blank lines are skipped, anything malformed raises TraceError."""
    keys: list[str] = []
    sizes: list[int] = []
    first_size: dict[str, int] = {}  # raw key -> its first size
    objects: dict[str, int] = {}  # object key -> size
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        t, sep1, rest = line.partition(",")
        raw, sep2, size_s = rest.rpartition(",")
        if not (sep1 and sep2):
            raise TraceError(f"{name}:{n}: expected time,key,size, got {line[:80]!r}")
        try:
            float(t)
            size = int(size_s)
        except ValueError:
            raise TraceError(f"{name}:{n}: bad time or size in {line[:80]!r}") from None
        if size < 0:
            raise TraceError(f"{name}:{n}: negative size")
        base = first_size.setdefault(raw, size)
        key = raw if base == size else f"{raw}~{size}"
        if key not in objects:
            objects[key] = size
        keys.append(key)
        sizes.append(size)
    return Trace(name, keys, sizes, len(objects), sum(objects.values()))


def read_trace(path: str | Path) -> Trace:
    p = Path(path)
    with p.open(encoding="utf-8", errors="replace") as f:
        return parse_trace(f, p.stem)


def resolve_capacity(spec: str, unique_bytes: int) -> int:
    """``5%`` (of the trace's unique bytes) or an absolute size such as ``512MiB``."""
    spec = spec.strip()
    if spec.endswith("%"):
        try:
            pct = float(spec[:-1])
        except ValueError:
            raise ValueError(f"bad percentage {spec!r}") from None
        if not (0 < pct <= 100) or math.isnan(pct):
            raise ValueError(f"percentage must be in (0, 100]: {spec!r}")
        return max(1, int(unique_bytes * pct / 100))
    cap = parse_size(spec)
    if cap <= 0:
        raise ValueError(f"capacity must be positive: {spec!r}")
    return cap


@dataclass
class Result:
    """Counts for one policy at one capacity; the ratios are what the CLI prints."""

    policy: str
    capacity_bytes: int
    requests: int = 0
    hits: int = 0
    bytes_requested: int = 0
    bytes_hit: int = 0

    @property
    def object_miss_ratio(self) -> float:
        return 1.0 - self.hits / self.requests if self.requests else 0.0

    @property
    def byte_miss_ratio(self) -> float:
        return 1.0 - self.bytes_hit / self.bytes_requested if self.bytes_requested else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "capacity_bytes": self.capacity_bytes,
            "requests": self.requests,
            "object_miss_ratio": round(self.object_miss_ratio, 6),
            "byte_miss_ratio": round(self.byte_miss_ratio, 6),
        }


def _feed(p: Policy, res: Result, keys: Sequence[str], sizes: Sequence[int]) -> None:
    """The edge store's protocol, request by request (kept tight: this is the hot loop)."""
    access, admit, insert, victims = p.access, p.admit, p.insert, p.victims
    cap = p.capacity
    hits = hit_bytes = 0
    for k, s in zip(keys, sizes, strict=True):
        if access(k, s):
            hits += 1
            hit_bytes += s
        elif s <= cap and admit(k, s):
            need = p.used + s - cap
            if need > 0:
                victims(need)
            insert(k, s)
            if p.used > cap:
                raise AssertionError(f"{p.name}: used {p.used} > capacity {cap}")
    res.requests += len(keys)
    res.hits += hits
    res.bytes_requested += sum(sizes)
    res.bytes_hit += hit_bytes


def simulate(
    trace: Trace,
    policies: Sequence[Policy],
    progress: Callable[[int], None] | None = None,
    check_every: int = 0,
) -> list[Result]:
    """Replay trace through every policy; check() each at the end (and every N batches)."""
    results = [Result(p.name, p.capacity) for p in policies]
    n = len(trace)
    for b, start in enumerate(range(0, n, BATCH), 1):
        keys = trace.keys[start : start + BATCH]
        sizes = trace.sizes[start : start + BATCH]
        for p, res in zip(policies, results, strict=True):
            _feed(p, res, keys, sizes)
            if check_every and b % check_every == 0:
                p.check()
        if progress is not None:
            progress(len(keys))
    for p in policies:
        p.check()
    return results


def run(
    trace: Trace,
    names: Sequence[str],
    capacities: Sequence[int],
    progress: Callable[[int], None] | None = None,
) -> list[Result]:
    """Every (capacity, policy) pair over one trace, in one pass."""
    policies = [make_policy(name, cap) for cap in capacities for name in names]
    return simulate(trace, policies, progress)
