"""Cache keys and Vary matching (RFC 9111 §2, §4.1).

The object key is the path plus the query with its parameters sorted by name (values of a
repeated name keep their order, which may matter to the origin) and with per-client
parameters dropped (the URL-signing ``token`` and tracking tags), so every viewer of a
segment shares one entry. Parameters are kept byte for byte otherwise: decoding could merge
two queries an origin tells apart. The path is percent-encoded again in the key so that a
decoded ``?`` or ``#`` in a path can never collide with a query or a chunk suffix.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_plus

from contracts.tokens import TOKEN_PARAM
from edge.http import Headers

DROPPED_PARAMS = frozenset({TOKEN_PARAM, "fbclid", "gclid", "msclkid"})
DROPPED_PREFIXES = ("utm_",)
ABSENT = "\x00"  # a request without the field: NUL cannot occur in a valid field value
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=._~-]*")  # quote() would not change it

# Fields whose list members are case-insensitive tokens and whose order carries no meaning
# (preference comes from q-values), so members are lower-cased and sorted (§4.1 allows
# "normalizing ... in a way that is known to have identical semantics").
_UNORDERED_CI = frozenset({"accept-encoding", "te"})
# Case-insensitive list fields whose order may break ties: lower-cased, order kept.
_ORDERED_CI = frozenset({"accept-language", "accept-charset", "accept"})


def _dropped(name: str, drop: frozenset[str]) -> bool:
    n = unquote_plus(name) if "%" in name or "+" in name else name
    return n in drop or n.startswith(DROPPED_PREFIXES)


def object_key(path: str, query: str, *, drop: frozenset[str] = DROPPED_PARAMS) -> str:
    """Cache key of an object: encoded path, then ``?`` and the kept parameters sorted."""
    key = path if _PLAIN_PATH.fullmatch(path) else quote(path, safe=_PATH_SAFE)
    if not query:
        return key
    params = [p for p in query.split("&") if p and not _dropped(p.partition("=")[0], drop)]
    if not params:
        return key
    params.sort(key=lambda p: p.partition("=")[0])  # stable: repeated names keep their order
    return f"{key}?{'&'.join(params)}"


def vary_fields(resp: Headers) -> list[str] | None:
    """The request fields a response varies on, lower-cased, sorted, unique; [] without Vary;
    None for ``Vary: *`` (the response can never be reused, §4.1)."""
    v = resp.get("vary")
    if v is None:
        return []
    names = {t.strip(" \t").lower() for t in v.split(",")}
    names.discard("")
    if "*" in names:
        return None
    return sorted(names)


def _normalise(name: str, value: str) -> str:
    members = [m.strip(" \t") for m in value.split(",")]
    members = [m for m in members if m]
    if name in _UNORDERED_CI:
        members = sorted(m.replace(" ", "").replace("\t", "").lower() for m in members)
    elif name in _ORDERED_CI:
        members = [m.replace(" ", "").replace("\t", "").lower() for m in members]
    return ", ".join(members)


def vary_values(fields: list[str], req: Headers) -> dict[str, str]:
    """The normalised values of ``fields`` in ``req``; an absent field maps to ``ABSENT`` so
    that it matches only another request without it (§4.1)."""
    out: dict[str, str] = {}
    for name in fields:
        value = req.get(name)
        out[name] = ABSENT if value is None else _normalise(name, value)
    return out


def vary_matches(stored: dict[str, str], req: Headers) -> bool:
    """Does ``req`` select the response stored with these ``vary_values``?"""
    if "*" in stored:
        return False
    return vary_values(list(stored), req) == stored
