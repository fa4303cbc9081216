from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from contracts.fleet import CloudFront, Signing
from contracts.tokens import TOKEN_PARAM, TokenResult, verify
from steering.signing import CloudFrontUrls, EdgeTokens, bucket_expiry

SECRETS = {"k1": b"old", "k2": b"new"}


def cf_b64decode(s: str) -> bytes:
    return base64.b64decode(s.replace("-", "+").replace("_", "=").replace("~", "/"))


def verify_cloudfront(url: str, public: rsa.RSAPublicKey) -> int:
    """Check a canned-policy signed URL the way CloudFront does; returns its expiry."""
    parts = urlsplit(url)
    q = parse_qs(parts.query)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    exp = int(q["Expires"][0])
    policy = json.dumps({"Statement": [{"Resource": base, "Condition": {
        "DateLessThan": {"AWS:EpochTime": exp}}}]}, separators=(",", ":"))
    public.verify(cf_b64decode(q["Signature"][0]), policy.encode(), padding.PKCS1v15(),
                  hashes.SHA1())
    assert q["Key-Pair-Id"] == ["KTESTPAIR"]
    return exp


def test_bucket_expiry_is_at_least_ttl_and_constant_within_a_bucket() -> None:
    assert bucket_expiry(1000, 300, 30) == 1320
    assert bucket_expiry(1019.9, 300, 30) == 1320
    assert bucket_expiry(1020, 300, 30) == 1350
    for now in range(1000, 1100):
        assert now + 300 <= bucket_expiry(now, 300, 30) <= now + 330


def test_edge_token_verifies_for_the_title_and_only_it() -> None:
    t = EdgeTokens(Signing("k2", SECRETS, ttl=300))
    q = t.query("/titles/T/", now=1000)
    tok = parse_qs(q)[TOKEN_PARAM][0]
    assert verify(tok, "/titles/T/r1/seg_00001.ts", 1200, SECRETS) is TokenResult.OK
    assert verify(tok, "/titles/U/master.m3u8", 1200, SECRETS) is TokenResult.WRONG_PATH
    assert verify(tok, "/titles/T/master.m3u8", 1400, SECRETS) is TokenResult.EXPIRED
    assert verify(tok, "/titles/T/master.m3u8", 1200, {"k1": b"old"}) is TokenResult.UNKNOWN_KEY
    assert t.query("/titles/T/", now=1001) == q  # memoised within the bucket


def test_edge_token_bound_to_client_ip_when_configured() -> None:
    t = EdgeTokens(Signing("k2", SECRETS, ttl=300, bind_client_ip=True))
    tok = parse_qs(t.query("/titles/T/", now=0, client_ip="81.2.69.160"))[TOKEN_PARAM][0]
    assert verify(tok, "/titles/T/x", 10, SECRETS, "81.2.69.160") is TokenResult.OK
    assert verify(tok, "/titles/T/x", 10, SECRETS, "81.2.69.161") is TokenResult.WRONG_CLIENT


def test_no_signing_section_means_no_token() -> None:
    assert EdgeTokens(None).query("/titles/T/", 0) == ""


def test_cloudfront_url_verifies_with_the_public_key_and_is_signed_once_per_bucket(
        cf_key: tuple[Path, rsa.RSAPublicKey]) -> None:
    path, public = cf_key
    cf = CloudFrontUrls(CloudFront("d111111abcdef8.cloudfront.net", "KTESTPAIR", str(path),
                                   url_ttl=3600))
    u = cf.url("/titles/T/master.m3u8", now=1_000_000)
    assert u.startswith("https://d111111abcdef8.cloudfront.net/titles/T/master.m3u8?")
    assert verify_cloudfront(u, public) >= 1_000_000 + 3600
    assert cf.url("/titles/T/master.m3u8", now=1_000_050) == u
    assert cf.signatures == 1
    tampered = u.replace("master.m3u8", "other.m3u8")
    with pytest.raises(InvalidSignature):
        verify_cloudfront(tampered, public)


def test_cloudfront_bucket_rollover_serves_previous_url_and_resigns_off_path(
        cf_key: tuple[Path, rsa.RSAPublicKey]) -> None:
    path, public = cf_key
    cf = CloudFrontUrls(CloudFront("d.cloudfront.net", "KTESTPAIR", str(path), url_ttl=3600))
    t0 = 1_000_000 - 1_000_000 % cf.bucket  # a bucket start
    old = cf.url("/a", now=t0 + 10)
    nxt = t0 + cf.bucket + 1  # next bucket: no signing on the request path
    assert cf.url("/a", now=nxt) == old and cf.signatures == 1
    assert verify_cloudfront(old, public) >= nxt + 3600 - cf.bucket
    assert cf.pending == {"/a"}
    assert cf.presign(nxt) == 0 and not cf.pending  # handed to the signing thread
    assert cf.url("/a", now=nxt) == old  # still the previous URL until it is installed
    assert cf.drain(nxt) == 1 and cf.signatures == 2
    new = cf.url("/a", now=nxt)
    assert new != old and verify_cloudfront(new, public) >= nxt + 3600
