"""What the origin holds: (size, MD5) per request path, to check every byte a player gets.

Read once before a run from the S3 listing: a single-part upload's ETag is the MD5 of the
object; an object with a multipart ETag ("...-N") is downloaded once and hashed here.
Titles are discovered from the same listing (every ``titles/<T>/master.m3u8``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.manifest import parse_s3_url


@dataclass(slots=True)
class OriginChecksums:
    table: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (size, md5)

    def expected(self, path: str) -> tuple[int, str] | None:
        return self.table.get(path)

    def titles(self) -> list[str]:
        out = []
        for p in self.table:
            parts = p.split("/")
            if len(parts) == 4 and parts[1] == "titles" and parts[3] == "master.m3u8":
                out.append(parts[2])
        return sorted(out)

    @classmethod
    def from_json(cls, path: str | Path) -> OriginChecksums:
        """Precomputed: a JSON object {"/titles/T/...": [size, "md5hex"], ...}."""
        try:
            doc = json.loads(Path(path).read_text())
            return cls({str(k): (int(v[0]), str(v[1]).strip('"').lower())
                        for k, v in dict(doc).items()})
        except (OSError, ValueError, TypeError, IndexError, KeyError) as e:
            raise ValueError(f"checksums file {path}: {e}") from e

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({k: list(v) for k, v in sorted(self.table.items())}))

    @classmethod
    def from_bodies(cls, bodies: dict[str, bytes]) -> OriginChecksums:
        return cls({p: (len(b), hashlib.md5(b, usedforsecurity=False).hexdigest())
                    for p, b in bodies.items()})

    @classmethod
    def from_s3(cls, origin: str, endpoint_url: str | None = None,
                client: Any = None) -> OriginChecksums:
        """Every object under ``<prefix>titles/`` of ``s3://bucket/prefix``."""
        import boto3

        bucket, prefix = parse_s3_url(origin)
        s3 = client or boto3.client("s3", endpoint_url=endpoint_url or None)
        table: dict[str, tuple[int, str]] = {}
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix + "titles/")
        for page in pages:
            for o in page.get("Contents", []):
                path = "/" + o["Key"][len(prefix):]
                etag = str(o.get("ETag", "")).strip('"')
                if len(etag) != 32 or "-" in etag:  # multipart or foreign: hash it ourselves
                    body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"]
                    h = hashlib.md5(usedforsecurity=False)
                    for chunk in iter(lambda b=body: b.read(1 << 20), b""):
                        h.update(chunk)
                    etag = h.hexdigest()
                table[path] = (int(o["Size"]), etag)
        return cls(table)
