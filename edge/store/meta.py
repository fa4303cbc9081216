"""What the store keeps about an object besides its bytes, and the version its chunks carry.

meta.json is the one record of an object on disk: written atomically (temp + rename) before any
of its chunks, so a chunk file is only ever reachable through the meta that names its version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

FORMAT = 1
# A Vary *pointer* (edge.variants) keeps its own table in ``vary`` under names no header can
# have: the varying fields, the generation of its variant keys, and when it was soft-purged.
VARY_POINTER = "\x00vary"
VARY_GEN = "\x00gen"
VARY_PURGED = "\x00purged"


@dataclass(slots=True)
class ObjectMeta:
    key: str  # object cache key (path + normalised query)
    size: int  # full length in bytes
    etag: str | None = None
    last_modified: str | None = None  # the origin's HTTP date, verbatim
    content_type: str = "application/octet-stream"
    # The stored response (edge.http.model.StoredResponse) as plain fields:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    request_time: float = 0.0
    response_time: float = 0.0
    vary: dict[str, str] = field(default_factory=dict)  # request header values this variant matched
    soft_purged: bool = False  # serve only after revalidating
    _vcache: tuple[Any, str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError("meta key must be a non-empty string")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"meta size must be a non-negative int: {self.size!r}")

    @property
    def version(self) -> str:
        """Hash of size and validators: chunk files carry it in their names, so a changed
        object never mixes old and new chunks. A strong ETag names the bytes by itself, so a
        newer Last-Modified beside the same one (a 304 may bring it) keeps the chunks.
        Cached: it is read on every chunk lookup."""
        strong = self.etag is not None and not self.etag.startswith("W/")
        ident = (self.size, self.etag, None if strong else self.last_modified)
        c = self._vcache
        if c is not None and c[0] == ident:
            return c[1]
        v = hashlib.sha1(json.dumps(ident).encode()).hexdigest()[:16]
        self._vcache = (ident, v)
        return v

    def replace(self, **changes: Any) -> ObjectMeta:
        return dataclasses.replace(self, **changes)

    # -- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "key": self.key, "size": self.size, "etag": self.etag,
            "last_modified": self.last_modified, "content_type": self.content_type,
            "status": self.status, "headers": self.headers, "request_time": self.request_time,
            "response_time": self.response_time, "vary": self.vary,
            "soft_purged": self.soft_purged,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ObjectMeta:
        """Parse meta.json; ValueError on anything malformed (the caller treats it as absent)."""
        try:
            d = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"meta is not JSON: {e}") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError("meta has an unknown format")
        try:
            meta = cls(
                key=_typed(d["key"], str),
                size=_typed(d["size"], int),
                etag=_opt_str(d.get("etag")),
                last_modified=_opt_str(d.get("last_modified")),
                content_type=_typed(d.get("content_type", "application/octet-stream"), str),
                status=_typed(d.get("status", 200), int),
                headers=_str_dict(d.get("headers", {})),
                request_time=float(d.get("request_time", 0.0)),
                response_time=float(d.get("response_time", 0.0)),
                vary=_str_dict(d.get("vary", {})),
                soft_purged=bool(d.get("soft_purged", False)),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"meta field missing or mistyped: {e}") from e
        return meta

    # -- edge.http bridge (imported lazily: the store does not need edge.http) ----------------
    def stored_response(self) -> Any:
        """This meta as an ``edge.http.model.StoredResponse``."""
        from edge.http.model import StoredResponse

        return StoredResponse(status=self.status, headers=dict(self.headers),
                              request_time=self.request_time, response_time=self.response_time)

    @classmethod
    def from_stored(cls, key: str, size: int, stored: Any,
                    vary: dict[str, str] | None = None) -> ObjectMeta:
        """Meta for a response the edge is about to store (stored: a StoredResponse)."""
        h = stored.headers
        return cls(
            key=key, size=size, etag=h.get("etag"), last_modified=h.get("last-modified"),
            content_type=h.get("content-type", "application/octet-stream"),
            status=stored.status, headers=dict(h), request_time=stored.request_time,
            response_time=stored.response_time, vary=dict(vary or {}),
        )

    def with_stored(self, stored: Any) -> ObjectMeta:
        """This meta with a new stored response (after a 304 revalidation): the version follows
        the new ETag/Last-Modified, so only a really changed object drops its chunks."""
        h = stored.headers
        return self.replace(
            etag=h.get("etag", self.etag), last_modified=h.get("last-modified", self.last_modified),
            content_type=h.get("content-type", self.content_type), status=stored.status,
            headers=dict(h), request_time=stored.request_time, response_time=stored.response_time,
            soft_purged=False,
        )


def _typed(v: Any, t: type) -> Any:
    if not isinstance(v, t) or isinstance(v, bool):
        raise TypeError(f"expected {t.__name__}, got {type(v).__name__}")
    return v


def _opt_str(v: Any) -> str | None:
    return None if v is None else _typed(v, str)


def _str_dict(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise TypeError("expected an object")
    return {str(k): str(x) for k, x in v.items()}
