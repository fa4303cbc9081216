"""Signed URLs: HMAC tokens for edge URLs, RSA (canned policy) for the CloudFront fallback.

Both are cached so the request path almost never signs: an expiry is rounded up to a
bucket boundary, so every request in the same bucket shares one token per title (one HMAC)
and one CloudFront URL per path (one RSA signature), while each URL still stays valid for
at least the configured ttl.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from contracts.config import ConfigError
from contracts.fleet import CloudFront, Signing
from contracts.tokens import sign, token_query

_MEMO_MAX = 100_000


def bucket_expiry(now: float, ttl: int, bucket: int) -> int:
    """Expiry >= now + ttl, constant within each ``bucket`` seconds of ``now``."""
    b = max(1, bucket)
    return (int(now) // b + 1) * b + ttl


class EdgeTokens:
    """``token=...`` query strings for edge URLs, signed with the active secret."""

    def __init__(self, signing: Signing | None) -> None:
        self.signing = signing
        self.bucket = max(1, signing.ttl // 10) if signing else 1
        self._memo: dict[tuple[str, int, str], str] = {}

    def query(self, acl: str, now: float, client_ip: str = "") -> str:
        """"token=..." (URL-encoded), or "" when the fleet has no signing section."""
        s = self.signing
        if s is None:
            return ""
        ip = client_ip if s.bind_client_ip else ""
        exp = bucket_expiry(now, s.ttl, self.bucket)
        k = (acl, exp, ip)
        q = self._memo.get(k)
        if q is None:
            q = token_query(sign(s.secrets[s.active_kid], s.active_kid, acl, exp, ip))
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[k] = q
        return q


def load_private_key(path: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"cloudfront private key {path}: {e}") from e
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"cloudfront private key {path}: not an RSA key")
    return key


class CloudFrontUrls:
    """Signed CloudFront URLs (canned policy, RSA-SHA1 as CloudFront requires), memoised per
    (path, expiry bucket). At a bucket boundary the paths in use keep their previous URL
    for a moment while a worker thread re-signs them (RSA signing releases the GIL), so the
    serving loop never signs at a rollover; only a path never seen before is signed on the
    request path."""

    def __init__(self, cf: CloudFront, bucket: int = 0) -> None:
        self.cf = cf
        self.base = cf.domain if cf.domain.startswith("http") else f"https://{cf.domain}"
        self.base = self.base.rstrip("/")
        key = load_private_key(cf.private_key_path)
        self._signer = CloudFrontSigner(
            cf.key_pair_id, lambda msg: key.sign(msg, padding.PKCS1v15(), hashes.SHA1()))
        self.bucket = bucket or max(1, cf.url_ttl // 10)
        self._memo: dict[tuple[str, int], str] = {}
        self.signatures = 0  # RSA operations done (tests and /metrics check the memo works)
        self.pending: set[str] = set()  # paths served from the previous bucket: re-sign soon
        self._pool: ThreadPoolExecutor | None = None
        self._job: Future[list[tuple[str, int, str]]] | None = None

    def url(self, path: str, now: float) -> str:
        """Signed URL valid >= url_ttl (or, just after a bucket boundary, the previous
        bucket's URL, valid >= url_ttl - bucket, while ``presign`` re-signs off the request
        path). Only a path never seen before is signed here."""
        exp = bucket_expiry(now, self.cf.url_ttl, self.bucket)
        u = self._memo.get((path, exp))
        if u is None:
            u = self._memo.get((path, exp - self.bucket))
            if u is not None:
                self.pending.add(path)
            else:
                u = self._remember(path, exp, self._sign(path, exp))
        return u

    def _sign(self, path: str, exp: int) -> str:
        when = dt.datetime.fromtimestamp(exp, tz=dt.UTC)
        return self._signer.generate_presigned_url(self.base + path, date_less_than=when)

    def _remember(self, path: str, exp: int, u: str) -> str:
        self.signatures += 1
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[(path, exp)] = u
        return u

    def _sign_many(self, paths: list[str], exp: int) -> list[tuple[str, int, str]]:
        return [(p, exp, self._sign(p, exp)) for p in paths]  # on the worker thread

    def presign(self, now: float) -> int:
        """Never blocks: installs what the worker has signed (returns how many), then hands
        it the paths that are still on their previous bucket's URL."""
        n = 0
        if self._job is not None:
            if not self._job.done():
                return 0
            for path, exp, u in self._job.result():
                self._remember(path, exp, u)
                n += 1
            self._job = None
        if self.pending:
            exp = bucket_expiry(now, self.cf.url_ttl, self.bucket)
            paths = [p for p in self.pending if (p, exp) not in self._memo]
            self.pending.clear()
            if paths:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="steering-cf-sign")
                self._job = self._pool.submit(self._sign_many, paths, exp)
        return n

    def drain(self, now: float, timeout: float = 30.0) -> int:
        """Finish any re-signing now (tests, shutdown); returns how many were installed."""
        n = 0
        while self._job is not None or self.pending:
            if self._job is not None:
                self._job.result(timeout)
            n += self.presign(now)
        return n

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
