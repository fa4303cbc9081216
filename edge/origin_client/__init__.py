"""Origin clients: fetch object bytes from an S3 bucket or an HTTP origin, streaming.

Both return an OriginResponse whose body is read piece by piece (never a whole object in
memory) under aggressive connect / first-byte / between-bytes timeouts.
"""

from __future__ import annotations

from edge.config import OriginConfig
from edge.origin_client.base import Origin, OriginError, OriginResponse
from edge.origin_client.http_origin import HttpOrigin
from edge.origin_client.s3_origin import S3Origin

__all__ = ["Origin", "OriginError", "OriginResponse", "HttpOrigin", "S3Origin", "make_origin"]


def make_origin(cfg: OriginConfig) -> Origin:
    if cfg.kind == "s3":
        return S3Origin(cfg)
    return HttpOrigin(cfg)
