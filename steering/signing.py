"""Signed URLs: HMAC tokens for edge URLs, RSA (canned policy) for the CloudFront fallback.

Both are cached so the request path almost never signs: an expiry is rounded up to a
bucket boundary, so every request in the same bucket shares one token per title (one HMAC)
and one CloudFront URL per path (one RSA signature), while each URL still stays valid for
at least the configured ttl.
"""

from __future__ import annotations

import datetime as dt
import time
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
    (path, expiry bucket); at a bucket boundary the re-signing is spread over ticks instead
    of landing on requests all at once."""

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
                u = self._sign(path, exp)
        return u

    def _sign(self, path: str, exp: int) -> str:
        when = dt.datetime.fromtimestamp(exp, tz=dt.UTC)
        u = self._signer.generate_presigned_url(self.base + path, date_less_than=when)
        self.signatures += 1
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[(path, exp)] = u
        return u

    def presign(self, now: float, budget_s: float = 0.002) -> int:
        """Sign pending paths for the current bucket for at most ~budget_s; returns count."""
        exp = bucket_expiry(now, self.cf.url_ttl, self.bucket)
        t0 = time.perf_counter()
        n = 0
        while self.pending and time.perf_counter() - t0 < budget_s:
            path = self.pending.pop()
            if (path, exp) not in self._memo:
                self._sign(path, exp)
                n += 1
        return n
