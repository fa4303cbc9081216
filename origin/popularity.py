"""Exponentially decayed popularity per object, per site / region / fleet, in bounded memory.

Decay: *forward decay* (Cormode, Shkapenyuk, Srivastava, Xu, ICDE 2009). A request at time
``ts`` adds ``2 ** ((ts - landmark) / half_life)`` to its object's counter; the decayed value
at ``now`` is ``counter / 2 ** ((now - landmark) / half_life)``. So a log can be read in any
order (edges ship files out of order) and no counter is ever touched to "age" it; the
landmark moves forward (rescaling every counter once) only before the float would overflow.

Bounded memory: one *capped dict with prune* per scope (``DecayedTopK``), a batched variant
of Misra-Gries / Space-Saving. Each scope keeps at most ``2 * capacity`` counters; when it
reaches that, the ``capacity`` largest survive (``heapq.nlargest``, O(n log k), once per
``capacity`` new keys, so O(log k) amortised per line). Estimates never exceed the truth: an
object loses only the weight it had when a prune dropped it (it restarts from 0 if seen
again), and a prune only drops counters at or below the capacity-th largest, which is at
most W/capacity (W: all weight so far). So an object holding more than 1/capacity of the
weight at every prune keeps every count; ``floor`` records the highest threshold used.
Why this and not count-min + heap: the planner needs the ranked top objects *with* their
weight, not point queries; a dict update is one C-level hash operation in CPython, while a
count-min sketch costs d hashes per line in Python and still needs a heap for the top-k.
With capacity at least the number of objects a site's budget holds (the default is generous)
the top of the ranking, which is all a manifest uses, is exact in practice (tested against an
exact count on a million lines).

A request counts as 1 (decayed), whatever its size: for whole-segment reads the object's
decayed request rate is exactly its byte-hit value per byte of disk, which is what a fill
that maximises byte hit ratio under a byte budget must rank by.
"""

from __future__ import annotations

import gzip
import heapq
import io
import json
import math
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from contracts.keys import normalize_path
from contracts.logs import AccessRecord

_LN2 = math.log(2.0)
_MAX_EXP = 600.0  # rescale before 2**exp gets near float overflow (2**1023)
MAX_AHEAD = 86400.0  # s a record's time may be past this machine's clock (skew, not years)
COUNTED_STATUS = frozenset({200, 206, 304})
COUNTED_METHODS = frozenset({"GET"})
# peer-to-peer fill traffic is not audience demand (the edge logs it with this cache value)
IGNORED_CACHE = frozenset({"peerfill"})
_LOG_NAME = re.compile(r"(?:^|/)(\d{9,11})(?:\.\d+)?-[^/]*\.jsonl\.gz$")


@dataclass(slots=True)
class Item:
    key: str
    hits: float  # decayed requests at the query time


class DecayedTopK:
    """Capped counter table with forward decay; see the module doc for the guarantee."""

    __slots__ = ("capacity", "half_life", "landmark", "_hits", "_limit", "floor", "peak",
                 "prunes")

    def __init__(self, capacity: int, half_life: float, landmark: float | None = None) -> None:
        if capacity < 1 or half_life <= 0:
            raise ValueError("capacity >= 1 and half_life > 0 required")
        self.capacity = capacity
        self.half_life = half_life
        self.landmark = landmark
        self._hits: dict[str, float] = {}
        self._limit = 2 * capacity
        self.floor = 0.0  # the highest prune threshold so far (forward units)
        self.peak = 0  # most counters ever held
        self.prunes = 0

    def __len__(self) -> int:
        return len(self._hits)

    def weight(self, ts: float) -> float:
        """Forward-decay weight of a request at ts (moves the landmark before overflow)."""
        if self.landmark is None:
            self.landmark = ts
        x = (ts - self.landmark) / self.half_life
        if x > _MAX_EXP:
            self._rescale(ts)
            x = 0.0
        return math.exp(x * _LN2)

    def add(self, key: str, w: float) -> None:
        hits = self._hits
        v = hits.get(key)
        if v is None:
            hits[key] = w
            if len(hits) >= self._limit:
                self._prune()
        else:
            hits[key] = v + w

    def _prune(self) -> None:
        """Keep the capacity largest counters (ties broken by arrival), remember the floor."""
        hits = self._hits
        self.peak = max(self.peak, len(hits))
        thr = heapq.nlargest(self.capacity, hits.values())[-1]
        kept = {k: v for k, v in hits.items() if v > thr}
        need = self.capacity - len(kept)
        if need > 0:
            for k, v in hits.items():
                if v == thr:
                    kept[k] = v
                    need -= 1
                    if not need:
                        break
        self.floor = max(self.floor, thr)
        self._hits = kept
        self.prunes += 1

    def _rescale(self, new_landmark: float) -> None:
        assert self.landmark is not None
        f = math.exp(-(new_landmark - self.landmark) / self.half_life * _LN2)
        self._hits = {k: v * f for k, v in self._hits.items()}
        self.floor *= f
        self.landmark = new_landmark

    def _scale(self, now: float) -> float:
        if self.landmark is None:
            return 1.0
        return math.exp(-(now - self.landmark) / self.half_life * _LN2)

    def get(self, key: str, now: float) -> float:
        return self._hits.get(key, 0.0) * self._scale(now)

    def error_bound(self, now: float) -> float:
        """The most any single prune took from one object (decayed to now)."""
        return self.floor * self._scale(now)

    def top(self, now: float, k: int | None = None) -> list[Item]:
        """Items by decayed hits, best first (ties: key order, for determinism)."""
        s = self._scale(now)
        hits = self._hits
        keys = sorted(hits, key=lambda key: (-hits[key], key))
        if k is not None:
            keys = keys[:k]
        return [Item(key, hits[key] * s) for key in keys]


@dataclass(slots=True)
class Popularity:
    """Decayed popularity in three scopes: per site, per region and the whole fleet."""

    half_life: float
    capacity: int = 200_000
    site_region: dict[str, str] = field(default_factory=dict)  # from the fleet
    sites: dict[str, DecayedTopK] = field(default_factory=dict)
    regions: dict[str, DecayedTopK] = field(default_factory=dict)
    fleet: DecayedTopK | None = None
    lines: int = 0
    counted: int = 0
    bad_lines: int = 0
    landmark: float | None = None

    def _table(self, scope: dict[str, DecayedTopK], name: str) -> DecayedTopK:
        t = scope.get(name)
        if t is None:
            t = scope[name] = DecayedTopK(self.capacity, self.half_life, self.landmark)
        return t

    def add(self, rec: AccessRecord, site: str = "", region: str = "") -> None:
        try:
            self.add_fields(rec.ts, rec.method, rec.path, rec.status, rec.cache,
                            rec.site or site, rec.region or region)
        except ValueError:
            self.lines += 1
            self.bad_lines += 1

    def add_fields(self, ts: float, method: str, path: str, status: int, cache: str,
                   site: str, region: str) -> None:
        """One access record, by its fields (the hot loop of the planner). ValueError, and
        nothing counted, for a record no edge writes: a time that is not finite or is more
        than MAX_AHEAD past this clock (it would move the decay landmark and zero every
        other count), a field that is not a string, a path that is not a request path. The
        path is counted decoded (what the origin's keys are), without its query."""
        if not (math.isfinite(ts) and ts <= time.time() + MAX_AHEAD):
            raise ValueError("record time out of range")
        if not (type(method) is type(path) is type(cache) is type(site) is type(region) is str):
            raise ValueError("record field is not a string")
        path = normalize_path(path.partition("?")[0])  # BadPath is a ValueError
        self.lines += 1
        if method not in COUNTED_METHODS or status not in COUNTED_STATUS or cache in IGNORED_CACHE:
            return
        fleet = self.fleet
        if fleet is None:
            self.landmark = ts
            fleet = self.fleet = DecayedTopK(self.capacity, self.half_life, ts)
        w = fleet.weight(ts)
        if fleet.landmark != self.landmark:  # the fleet table rescaled: follow it
            self._move_landmark(fleet.landmark)
        if not region:
            region = self.site_region.get(site, "")
        fleet.add(path, w)
        if site:
            (self.sites.get(site) or self._table(self.sites, site)).add(path, w)
        if region:
            (self.regions.get(region) or self._table(self.regions, region)).add(path, w)
        self.counted += 1

    def _move_landmark(self, landmark: float | None) -> None:
        assert landmark is not None
        self.landmark = landmark
        for t in (*self.sites.values(), *self.regions.values()):
            t._rescale(landmark)

    def add_lines(self, lines: Iterable[bytes | str], site: str = "", region: str = "",
                  batch: int = 2000) -> None:
        """JSON lines (contracts.logs.AccessRecord); decoded a batch per json.loads call."""
        buf: list[str] = []
        for line in lines:
            if isinstance(line, bytes):
                try:
                    line = line.decode()
                except UnicodeDecodeError:
                    self.lines += 1
                    self.bad_lines += 1
                    continue
            line = line.strip()
            if line:
                buf.append(line)
                if len(buf) >= batch:
                    self._add_batch(buf, site, region)
                    buf = []
        if buf:
            self._add_batch(buf, site, region)

    def _add_batch(self, lines: list[str], site: str, region: str) -> None:
        try:
            docs = json.loads("[" + ",".join(lines) + "]")
        except ValueError:
            docs = None
        if docs is None or len(docs) != len(lines):  # a bad line in the batch: go one by one
            docs = []
            for line in lines:
                try:
                    docs.append(json.loads(line))
                except ValueError:
                    docs.append(None)
        add = self.add_fields
        for d in docs:
            try:
                add(float(d["ts"]), d.get("method", "GET"), d["path"], int(d["status"]),
                    d.get("cache", ""), d.get("site") or site, d.get("region") or region)
            except (TypeError, KeyError, ValueError, AttributeError):
                self.lines += 1
                self.bad_lines += 1  # e.g. the torn last line of a killed writer

    def peak_counters(self) -> int:
        tables = [*self.sites.values(), *self.regions.values()]
        if self.fleet is not None:
            tables.append(self.fleet)
        return max((max(t.peak, len(t)) for t in tables), default=0)

    def summary(self) -> dict[str, Any]:
        return {"lines": self.lines, "counted": self.counted, "bad_lines": self.bad_lines,
                "sites": sorted(self.sites), "regions": sorted(self.regions),
                "peak_counters_per_scope": self.peak_counters()}


def log_time_from_key(key: str) -> float | None:
    """``.../<ts>-<pid>-<seq>.jsonl.gz`` -> ts (the shipper's naming), else None."""
    m = _LOG_NAME.search(key)
    return float(m.group(1)) if m else None


def site_from_key(key: str, logs_prefix: str) -> str:
    """``<logs_prefix><site>/<edge>/<file>`` -> site."""
    rest = key[len(logs_prefix):] if key.startswith(logs_prefix) else key
    parts = rest.split("/")
    return parts[0] if len(parts) >= 3 else ""


def iter_gzip_lines(stream: Any) -> Iterator[bytes]:
    """Lines of a gzip stream read incrementally (never the whole file in memory)."""
    with gzip.GzipFile(fileobj=stream, mode="rb") as gz:
        yield from io.BufferedReader(gz, buffer_size=1 << 20)


def _folders(client: Any, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/")
    return [c["Prefix"] for page in pages for c in page.get("CommonPrefixes", [])]


def log_keys(client: Any, bucket: str, logs_prefix: str, since: float | None) -> Iterator[str]:
    """Log object keys under ``<logs_prefix><site>/<edge>/``; with since, each edge folder is
    listed from ``StartAfter=<folder><since>`` (names start with a 10-digit unix time), so
    months of retained logs cost no listing of the old ones."""
    from origin.s3 import list_objects

    if since is None:
        for obj in list_objects(client, bucket, logs_prefix):
            yield obj["Key"]
        return
    paginator = client.get_paginator("list_objects_v2")
    for site in _folders(client, bucket, logs_prefix):
        for edge in _folders(client, bucket, site):
            start = f"{edge}{max(0, int(since)):010d}"
            for page in paginator.paginate(Bucket=bucket, Prefix=edge, StartAfter=start):
                for obj in page.get("Contents", []):
                    yield obj["Key"]


def read_logs(client: Any, bucket: str, logs_prefix: str, pop: Popularity,
              now: float | None = None, max_age: float | None = None) -> dict[str, int]:
    """Stream the log objects under the prefix into pop; files older than max_age (by the
    time in their name) are not read, and not even listed when names follow the shipper's."""
    from botocore.exceptions import ClientError

    now = time.time() if now is None else now
    since = now - max_age if max_age is not None else None
    files = skipped = corrupt = gone = 0
    for key in log_keys(client, bucket, logs_prefix, since):
        if not key.endswith(".jsonl.gz"):
            continue
        ts = log_time_from_key(key)
        if since is not None and ts is not None and ts < since:
            skipped += 1
            continue
        try:
            body = client.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                gone += 1  # expired by a lifecycle rule since the listing
                continue
            raise
        site = site_from_key(key, logs_prefix)
        try:
            pop.add_lines(iter_gzip_lines(body), site=site,
                          region=pop.site_region.get(site, ""))
        except (OSError, EOFError, zlib.error, json.JSONDecodeError):
            pop.bad_lines += 1  # a corrupt or truncated object: keep what was read
            corrupt += 1
        finally:
            body.close()
        files += 1
    return {"files": files, "skipped_old": skipped, "corrupt": corrupt, "gone": gone}
