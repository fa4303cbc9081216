"""Fill manifests: what one site (and each edge in it) should hold, ranked.

``edgecdn fill plan`` writes them to S3; each edge's fill worker reads its own. Like the
edge report, the document is small, versioned and validated before it replaces the last
good one: a manifest that fails ``Manifest.from_dict`` is ignored, never half-applied.

Where they live (keys relative to the bucket of the manifests prefix)::

    <manifests_prefix><site>.json            the site's manifest (every entry, its edges)
    <manifests_prefix><site>/<edge>.json     one edge's share (entries whose edges hold it)

``budget`` is the fill budget per edge in bytes (fleet ``Site.disk_bytes``); for every edge
the sizes of the entries it holds add up to at most ``budget``. ``rank`` is 1-based and
strictly increasing in list order: rank 1 is the most valuable object, pinned hardest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from contracts.keys import BadPath, normalize_path

MANIFEST_VERSION = 1


class ManifestError(ValueError):
    """A manifest document that must not be used; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    path: str  # request path, e.g. /titles/T/480p/seg_00003.ts
    size: int  # object size in bytes (from the origin listing)
    rank: int  # 1 = most valuable
    edges: tuple[str, ...]  # edges of the site that should hold it (rendezvous order)
    etag: str | None = None  # origin ETag at planning time (quotes stripped), if known
    score: float = 0.0  # decayed popularity density used for the ranking (informative)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "size": self.size, "rank": self.rank,
                             "edges": list(self.edges)}
        if self.etag is not None:
            d["etag"] = self.etag
        if self.score:
            d["score"] = round(self.score, 6)
        return d


@dataclass(slots=True)
class Manifest:
    site: str
    budget: int  # bytes per edge
    entries: list[ManifestEntry]
    generated_at: float
    region: str = ""
    edge: str | None = None  # set in a per-edge manifest
    peers: dict[str, str] = field(default_factory=dict)  # other edges of the site: name -> URL
    half_life: float = 0.0  # seconds, informative
    version: int = MANIFEST_VERSION

    def bytes_for(self, edge: str) -> int:
        return sum(e.size for e in self.entries if edge in e.edges)

    def for_edge(self, edge: str, peers: dict[str, str] | None = None) -> Manifest:
        """This edge's share, ranks renumbered 1.. in the same order."""
        mine = [e for e in self.entries if edge in e.edges]
        entries = [
            ManifestEntry(e.path, e.size, i + 1, e.edges, e.etag, e.score)
            for i, e in enumerate(mine)
        ]
        return Manifest(self.site, self.budget, entries, self.generated_at, self.region, edge,
                        dict(peers or {}), self.half_life, self.version)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "version": self.version, "generated_at": self.generated_at, "site": self.site,
            "region": self.region, "budget": self.budget, "half_life": self.half_life,
            "entries": [e.to_dict() for e in self.entries],
        }
        if self.edge is not None:
            d["edge"] = self.edge
        if self.peers:
            d["peers"] = dict(self.peers)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise ManifestError(f"manifest is not JSON: {e}") from e
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        if not isinstance(d, dict):
            raise ManifestError("manifest is not an object")
        version = d.get("version")
        if version != MANIFEST_VERSION:
            raise ManifestError(f"unsupported manifest version {version!r}")
        site = _str(d, "site")
        budget = _int(d, "budget", "manifest")
        gen = d.get("generated_at")
        if not isinstance(gen, int | float) or isinstance(gen, bool) or gen < 0:
            raise ManifestError("generated_at must be a non-negative number")
        edge = d.get("edge")
        if edge is not None and (not isinstance(edge, str) or not edge):
            raise ManifestError("edge must be a non-empty string")
        peers = d.get("peers", {})
        if not isinstance(peers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.startswith(("http://", "https://"))
            for k, v in peers.items()
        ):
            raise ManifestError("peers must map edge names to http(s) URLs")
        raw = d.get("entries")
        if not isinstance(raw, list):
            raise ManifestError("entries must be a list")
        entries = [_entry(e, i) for i, e in enumerate(raw)]
        m = cls(site, budget, entries, float(gen), str(d.get("region", "")), edge, dict(peers),
                float(d.get("half_life", 0.0) or 0.0), version)
        m.validate()
        return m

    def validate(self) -> None:
        """Ranks increasing, paths unique, each edge within budget (and only itself if per-edge)."""
        seen: set[str] = set()
        last = 0
        used: dict[str, int] = {}
        for e in self.entries:
            if e.rank <= last:
                raise ManifestError(f"rank {e.rank} of {e.path} not increasing")
            last = e.rank
            if e.path in seen:
                raise ManifestError(f"duplicate path {e.path}")
            seen.add(e.path)
            if self.edge is not None and self.edge not in e.edges:
                raise ManifestError(f"{e.path} is not assigned to edge {self.edge}")
            for name in e.edges:
                used[name] = used.get(name, 0) + e.size
        for name, total in used.items():
            if total > self.budget:
                raise ManifestError(f"edge {name}: {total} bytes over budget {self.budget}")


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise ManifestError(f"{key} must be a non-empty string")
    return v


def _int(d: dict[str, Any], key: str, where: str) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ManifestError(f"{where}: {key} must be a non-negative integer")
    return v


def _entry(e: Any, i: int) -> ManifestEntry:
    where = f"entries[{i}]"
    if not isinstance(e, dict):
        raise ManifestError(f"{where} is not an object")
    path = e.get("path")
    if not isinstance(path, str):
        raise ManifestError(f"{where}: path must be a string")
    try:
        if normalize_path(path) != path:
            raise ManifestError(f"{where}: path {path!r} is not normalized")
    except BadPath as exc:
        raise ManifestError(f"{where}: bad path {path!r}: {exc}") from exc
    edges = e.get("edges")
    if isinstance(edges, str):
        edges = [edges]
    if edges is None and isinstance(e.get("edge"), str):
        edges = [e["edge"]]
    if not isinstance(edges, list) or not edges or not all(
        isinstance(x, str) and x for x in edges
    ):
        raise ManifestError(f"{where}: edges must be a non-empty list of names")
    etag = e.get("etag")
    if etag is not None and not isinstance(etag, str):
        raise ManifestError(f"{where}: etag must be a string")
    score = e.get("score", 0.0)
    if not isinstance(score, int | float) or isinstance(score, bool):
        raise ManifestError(f"{where}: score must be a number")
    return ManifestEntry(path, _int(e, "size", where), _int(e, "rank", where), tuple(edges),
                         etag, float(score))


def site_manifest_key(prefix: str, site: str) -> str:
    return f"{prefix}{site}.json"


def edge_manifest_key(prefix: str, site: str, edge: str) -> str:
    return f"{prefix}{site}/{edge}.json"


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix/"); prefix "" or ends in "/"."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


def resolve_prefix(value: str, bucket: str) -> tuple[str, str]:
    """A logs/manifests prefix: a full ``s3://`` URL, or a key prefix in ``bucket``."""
    if value.startswith("s3://"):
        return parse_s3_url(value)
    value = value.strip("/")
    return bucket, (value + "/" if value else "")
