"""The one place origin tooling builds a boto3 S3 client and names origin keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from contracts.manifest import parse_s3_url


def s3_client(endpoint_url: str | None = None, region: str | None = None,
              max_pool: int = 16) -> Any:
    """A thread-safe boto3 client; endpoint/region/credentials else from the AWS chain."""
    import boto3
    from botocore.config import Config

    cfg = Config(max_pool_connections=max_pool, retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
                        config=cfg)


def origin_location(origin: str | None, bucket: str | None, prefix: str | None = None
                    ) -> tuple[str, str]:
    """``--origin s3://b/p`` or ``--bucket b [--prefix p]`` -> (bucket, "p/")."""
    if origin:
        return parse_s3_url(origin)
    if bucket:
        p = (prefix or "").strip("/")
        return bucket, (p + "/" if p else "")
    raise ValueError("give --origin s3://bucket/prefix or --bucket NAME")


def object_key(prefix: str, path: str) -> str:
    """Request path /titles/T/x.ts -> key <prefix>titles/T/x.ts (the edge maps it the same way)."""
    return prefix + path.lstrip("/")


def list_objects(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under prefix (Key, Size, ETag, ...), page by page."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])
