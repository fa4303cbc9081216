"""An S3 (or S3-compatible) origin: boto3 only presigns; aiohttp streams the bytes.

Presigning is local CPU work (SigV4), so it runs inline; presigned URLs are reused for half
their lifetime. Range / If-None-Match are ordinary headers, not part of the signature.
"""

from __future__ import annotations

import time

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from edge.config import OriginConfig, s3_endpoint
from edge.origin_client.base import AiohttpFetcher, Headers, OriginError, OriginResponse
from edge.origin_client.s3client import s3_client

URL_TTL = 600
# request fields S3's GetObject evaluates itself (If-Range it does not: see fetch)
FORWARDED = frozenset({"range", "if-none-match", "if-modified-since", "if-match",
                       "if-unmodified-since"})


class S3Origin:
    kind = "s3"
    supports_methods = frozenset({"GET", "HEAD"})

    def __init__(self, cfg: OriginConfig) -> None:
        self.cfg = cfg
        self.bucket = cfg.bucket
        self.prefix = cfg.prefix
        endpoint = cfg.endpoint_url
        custom = s3_endpoint(endpoint) is not None
        bconf = Config(signature_version="s3v4",
                       s3={"addressing_style": "path" if custom else "auto"})
        self.client = s3_client(endpoint, cfg.region, config=bconf,
                                access_key_id=cfg.access_key_id,
                                secret_access_key=cfg.secret_access_key)
        self.fetcher = AiohttpFetcher(cfg)
        self._urls: dict[tuple[str, str], tuple[float, str]] = {}

    async def start(self) -> None:
        await self.fetcher.start()

    def object_key(self, path: str) -> str:
        key = path.lstrip("/")
        return f"{self.prefix}/{key}" if self.prefix else key

    def presign(self, method: str, path: str) -> str:
        now = time.monotonic()
        hit = self._urls.get((method, path))
        if hit and hit[0] > now:
            return hit[1]
        op = "head_object" if method == "HEAD" else "get_object"
        url = self.client.generate_presigned_url(
            op, Params={"Bucket": self.bucket, "Key": self.object_key(path)}, ExpiresIn=URL_TTL,
        )
        if len(self._urls) > 10000:
            self._urls.clear()
        self._urls[(method, path)] = (now + URL_TTL / 2, url)
        return url

    async def fetch(self, method: str, path: str, query: str, headers: Headers,
                    body: bytes | None = None) -> OriginResponse:
        """``query`` is ignored: an S3 object does not vary by query string.

        S3 ignores If-Range (RFC 9110 §13.1.5), so a client resuming a download could be sent
        a range of a changed object. A strong entity-tag is asked as If-Match on the ranged
        GET, and a 412 (changed) gets the whole object; a date or a weak tag gets the whole
        object at once (always right, if not always the least data)."""
        if not self.object_key(path):  # "/" with no prefix: no object has the empty key
            return OriginResponse(404, {"content-type": "text/plain", "content-length": "0"})
        h = {k: v for k, v in headers.items() if k in FORWARDED}
        tag = headers.get("if-range")
        if tag is not None and "range" in h:
            if tag.startswith('"') and "if-match" not in h:
                resp = await self._get(method, path, {**h, "if-match": tag})
                if resp.status != 412:
                    return resp
                resp.release()
            del h["range"]
        return await self._get(method, path, h)

    async def _get(self, method: str, path: str, h: Headers) -> OriginResponse:
        try:
            url = self.presign(method, path)
        except (BotoCoreError, ClientError, ValueError) as e:  # no credentials, bad config
            raise OriginError("unreachable", f"cannot sign the S3 request: {type(e).__name__}") \
                from e
        resp = await self.fetcher.request(method, url, h, None)
        resp.headers = self._clean(resp.headers, resp.status)
        return resp

    def _clean(self, headers: Headers, status: int) -> Headers:
        out = {k: v for k, v in headers.items()
               if not k.startswith("x-amz-") and k not in ("server",)}
        ttl = self.cfg.default_ttl
        # objects only: not on a 304 (it would replace the stored object's own Cache-Control,
        # §4.3.4), nor on an error (a missing key is kept for origin.negative_ttl instead)
        if ttl > 0 and status in (200, 206) and "cache-control" not in out \
                and "expires" not in out:
            cc = f"max-age={int(ttl)}"
            if self.cfg.stale_if_error > 0:
                cc += f", stale-if-error={int(self.cfg.stale_if_error)}"
            out["cache-control"] = cc
        return out

    async def close(self) -> None:
        await self.fetcher.close()
