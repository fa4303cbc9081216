"""Where a fill worker gets its manifest: one S3 object, fetched conditionally.

The last good manifest is also kept on local disk, so a restarted edge resumes its fill
(and its pins) before S3 answers. A document that fails validation never replaces the last
good one (Traffic Control's rule for config snapshots).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, Protocol

from contracts.manifest import Manifest, ManifestError
from edge.origin_client.s3client import s3_client

log = logging.getLogger(__name__)


class ManifestSource(Protocol):
    where: str

    async def fetch(self) -> Manifest | None:
        """A new manifest, or None when unchanged/unavailable (raises ManifestError if bad)."""
        ...


class S3ManifestSource:
    def __init__(self, bucket: str, key: str, endpoint_url: str | None = None,
                 region: str | None = None, cache_file: Path | None = None,
                 ca_file: str | None = None) -> None:
        """ca_file: the edge's origin.ca_file, trusted for an https endpoint (None: the
        system store, or AWS_CA_BUNDLE as boto3 reads it)."""
        self.bucket, self.key = bucket, key
        self.where = f"s3://{bucket}/{key}"
        self.endpoint_url, self.region = endpoint_url, region
        self.ca_file = ca_file
        self.cache_file = cache_file
        self.etag: str | None = None
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            self._client = s3_client(self.endpoint_url, self.region, ca_file=self.ca_file)
        return self._client

    def load_cached(self) -> Manifest | None:
        """The last good manifest saved on local disk, if any and valid."""
        if self.cache_file is None or not self.cache_file.is_file():
            return None
        try:
            return Manifest.from_json(self.cache_file.read_bytes())
        except (OSError, ManifestError) as e:
            log.warning("ignoring cached manifest %s: %s", self.cache_file, e)
            return None

    def _get(self) -> tuple[bytes, str | None] | None:
        from botocore.exceptions import ClientError

        kw: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if self.etag:
            kw["IfNoneMatch"] = self.etag
        try:
            resp = self._s3().get_object(**kw)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("304", "NotModified") or status == 304:
                return None
            if code in ("NoSuchKey", "404") or status == 404:
                return None
            raise
        return resp["Body"].read(), resp.get("ETag")

    async def fetch(self) -> Manifest | None:
        got = await asyncio.to_thread(self._get)
        if got is None:
            return None
        body, self.etag = got  # a bad document is reported once, not at every refresh
        m = Manifest.from_json(body)  # raises ManifestError: the caller keeps the last good
        if self.cache_file is not None:
            await asyncio.to_thread(self._save, body)
        return m

    def _save(self, body: bytes) -> None:
        assert self.cache_file is not None
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(".tmp")
        tmp.write_bytes(body)
        os.replace(tmp, self.cache_file)
