"""Short-lived URL tokens: steering signs, the edge verifies (HMAC-SHA256, like Akamai's).

Wire format, in the query parameter ``token``::

    exp=<unix seconds>~acl=<path prefix>~ip=<client addr or empty>~kid=<key id>~hmac=<hex>

The HMAC covers everything before ``~hmac=``. ``kid`` names which secret signed it, so
two secrets can be active during rotation. ``now`` is always passed in (no clock here).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote, unquote

TOKEN_PARAM = "token"


class TokenResult(enum.Enum):
    OK = "ok"
    MISSING = "missing token"
    MALFORMED = "malformed token"
    EXPIRED = "token expired"
    UNKNOWN_KEY = "unknown token key"
    BAD_SIGNATURE = "bad token signature"
    WRONG_PATH = "token does not cover this path"
    WRONG_CLIENT = "token bound to another client"


def _mac(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def sign(secret: bytes, kid: str, acl: str, expires: int, client_ip: str = "") -> str:
    if "~" in acl or "~" in kid:
        raise ValueError("'~' is not allowed in acl or kid")
    body = f"exp={int(expires)}~acl={acl}~ip={client_ip}~kid={kid}"
    return f"{body}~hmac={_mac(secret, body)}"


def token_query(token: str) -> str:
    """``token=...`` ready to append to a URL."""
    return f"{TOKEN_PARAM}={quote(token, safe='')}"


def verify(
    token: str | None,
    path: str,
    now: float,
    secrets: Mapping[str, bytes],
    client_ip: str | None = None,
) -> TokenResult:
    if not token:
        return TokenResult.MISSING
    token = unquote(token)
    body, sep, mac = token.rpartition("~hmac=")
    if not sep:
        return TokenResult.MALFORMED
    fields: dict[str, str] = {}
    for part in body.split("~"):
        k, eq, v = part.partition("=")
        if not eq or k in fields:
            return TokenResult.MALFORMED
        fields[k] = v
    if set(fields) != {"exp", "acl", "ip", "kid"}:
        return TokenResult.MALFORMED
    try:
        exp = int(fields["exp"])
    except ValueError:
        return TokenResult.MALFORMED
    secret = secrets.get(fields["kid"])
    if secret is None:
        return TokenResult.UNKNOWN_KEY
    if not hmac.compare_digest(_mac(secret, body), mac):
        return TokenResult.BAD_SIGNATURE
    if exp < now:
        return TokenResult.EXPIRED
    acl = fields["acl"]
    if not (path == acl or (acl.endswith("/") and path.startswith(acl))
            or (acl.endswith("*") and path.startswith(acl[:-1]))):
        return TokenResult.WRONG_PATH
    if fields["ip"] and fields["ip"] != (client_ip or ""):
        return TokenResult.WRONG_CLIENT
    return TokenResult.OK
