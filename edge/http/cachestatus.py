"""The Cache-Status response field (RFC 9211).

One list member per cache, as a Structured Field (RFC 8941): the cache's name, then
parameters: ``hit`` (served without going forward), ``fwd`` (why it went forward),
``fwd-status``, ``stored``, ``collapsed``, ``ttl`` (seconds of freshness left, negative when
stale) and ``detail``. ``hit`` and ``fwd`` contradict each other (§2.1, §2.2).
"""

from __future__ import annotations

import math
import re

FWD_REASONS = frozenset(
    {"bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale", "partial"}
)
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*")


def _item(v: str) -> str:
    """An sf-token when it is one, else an sf-string (escaping \\ and "). Characters an
    sf-string cannot hold (controls, non-ASCII) become "?": a header must never fail."""
    if _TOKEN.fullmatch(v):
        return v
    v = "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in v)
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cache_status(
    *,
    hit: bool,
    fwd: str | None = None,
    stored: bool = False,
    ttl: float | None = None,
    detail: str | None = None,
    key: str = "edgecdn",
    fwd_status: int | None = None,
    collapsed: bool = False,
) -> str:
    """One Cache-Status member, e.g. ``edgecdn; hit; ttl=12`` or ``edgecdn; fwd=miss; stored``.
    Raises ValueError for a contradiction (hit with fwd) or an unknown fwd reason: both are
    programming errors, caught by the caller's tests."""
    if hit and fwd is not None:
        raise ValueError("RFC 9211: a hit did not go forward; do not pass fwd with hit")
    if fwd is not None and fwd not in FWD_REASONS:
        raise ValueError(f"unknown fwd reason {fwd!r}")
    out = [_item(key)]
    if hit:
        out.append("hit")
    if fwd is not None:
        out.append(f"fwd={fwd}")
    if fwd_status is not None:
        out.append(f"fwd-status={int(fwd_status)}")
    if stored:
        out.append("stored")
    if collapsed:
        out.append("collapsed")
    if ttl is not None and math.isfinite(ttl):
        out.append(f"ttl={math.floor(ttl)}")
    if detail is not None:
        out.append(f"detail={_item(detail)}")
    return "; ".join(out)


def append_cache_status(existing: str | None, member: str) -> str:
    """Add this cache's member after the upstream ones (§2: ordered origin to client)."""
    return f"{existing}, {member}" if existing else member


UPSTREAM_MAX = 512  # characters of received Cache-Status kept (a header must stay small)


def upstream_members(value: str | None, own: str = "edgecdn") -> str | None:
    """The members of a received Cache-Status that this cache's answer keeps in front of its
    own (§2: a cache SHOULD preserve them): all but those named ``own``, which describe hops
    inside the edge tier (a sibling worker, a peer edge). None when nothing is left, or when
    the value is too long or not printable ASCII (a header must never fail)."""
    if not value or len(value) > UPSTREAM_MAX or not value.isascii() or not value.isprintable():
        return None
    members, cur, quoted, escaped = [], [], False, False
    for c in value:  # split at commas outside sf-strings
        if escaped:
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            members.append("".join(cur).strip())
            cur = []
            continue
        cur.append(c)
    members.append("".join(cur).strip())
    keep = [m for m in members if m and m.split(";", 1)[0].strip().strip('"') != own]
    return ", ".join(keep) or None

