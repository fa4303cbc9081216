"""Cache-Control parsing (RFC 9111 §5.2, RFC 5861, RFC 8246) for requests and responses.

One parser for both directions: the caller knows which directives apply. Rules kept here:
- names are case-insensitive; arguments may be tokens or quoted-strings (§5.2: recipients
  accept both forms), commas inside quoted strings do not split;
- a delta-seconds that is not a non-negative integer, or a directive repeated with different
  values, is invalid (§4.2.1) and reads as 0, so the response is treated as stale;
- delta-seconds beyond 2^31 read as 2^31 (§1.2.2);
- ``no-cache`` / ``private`` with a field list are the *qualified* forms: ``no_cache`` /
  ``private`` stay False and the fields land in ``no_cache_fields`` / ``private_fields``
  (a shared cache may store such a response once it drops those fields, §3.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

DELTA_MAX = 2**31

_DELTA_DIRECTIVES = {
    "max-age": "max_age",
    "s-maxage": "s_maxage",
    "stale-while-revalidate": "stale_while_revalidate",
    "stale-if-error": "stale_if_error",
    "min-fresh": "min_fresh",
}
_FLAG_DIRECTIVES = {
    "no-store": "no_store",
    "public": "public",
    "must-revalidate": "must_revalidate",
    "proxy-revalidate": "proxy_revalidate",
    "immutable": "immutable",
    "only-if-cached": "only_if_cached",
    "no-transform": "no_transform",
    "must-understand": "must_understand",
}


@dataclass(frozen=True, slots=True)
class CacheControl:
    """Parsed directives. ``None`` means absent; ``max_stale`` is ``math.inf`` without a value."""

    max_age: int | None = None
    s_maxage: int | None = None
    no_store: bool = False
    no_cache: bool = False
    no_cache_fields: tuple[str, ...] = ()
    private: bool = False
    private_fields: tuple[str, ...] = ()
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None
    immutable: bool = False
    only_if_cached: bool = False
    max_stale: float | None = None
    min_fresh: int | None = None
    no_transform: bool = False
    must_understand: bool = False
    extensions: tuple[tuple[str, str | None], ...] = ()


EMPTY = CacheControl()


def _split_members(v: str) -> list[str]:
    """Split a list field on commas that are not inside a quoted-string."""
    out: list[str] = []
    cur: list[str] = []
    quoted = escaped = False
    for ch in v:
        if escaped:
            cur.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            cur.append(ch)
            escaped = True
        elif ch == '"':
            cur.append(ch)
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _unquote(arg: str) -> str:
    if len(arg) >= 2 and arg[0] == '"' and arg[-1] == '"':
        body = arg[1:-1]
        res: list[str] = []
        i = 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            res.append(body[i])
            i += 1
        return "".join(res)
    return arg


def _delta(arg: str | None) -> int:
    """delta-seconds (RFC 9111 §1.2.2); invalid -> 0 (treat as stale), huge -> 2^31."""
    if arg is None or not arg.isascii() or not arg.isdigit():
        return 0
    return delta_seconds(arg)


def delta_seconds(digits: str) -> int:
    """A run of ASCII digits as an int saturated at 2^31, cheap for any length."""
    digits = digits.lstrip("0") or "0"
    return DELTA_MAX if len(digits) > 10 else min(int(digits), DELTA_MAX)


def _fields(arg: str) -> tuple[str, ...]:
    return tuple(f.strip(" \t").lower() for f in arg.split(",") if f.strip(" \t"))


@lru_cache(maxsize=4096)
def _parse(v: str) -> CacheControl:
    seen: dict[str, str | None] = {}
    invalid: set[str] = set()
    vals: dict[str, object] = {}
    no_cache_fields: list[str] = []
    private_fields: list[str] = []
    ext: list[tuple[str, str | None]] = []
    for member in _split_members(v):
        member = member.strip(" \t")
        if not member:
            continue  # empty list elements are ignored (RFC 9110 §5.6.1)
        name, eq, raw = member.partition("=")
        name = name.strip(" \t").lower()
        arg = _unquote(raw.strip(" \t")) if eq else None
        if name in seen and seen[name] != arg:
            invalid.add(name)  # conflicting duplicate: invalid (RFC 9111 §4.2.1)
        seen[name] = arg
        if name in _DELTA_DIRECTIVES:
            vals[_DELTA_DIRECTIVES[name]] = _delta(arg)
        elif name in _FLAG_DIRECTIVES:
            vals[_FLAG_DIRECTIVES[name]] = True
        elif name == "max-stale":
            vals["max_stale"] = math.inf if arg is None else float(_delta(arg))
        elif name == "no-cache":
            if arg is None:
                vals["no_cache"] = True
            else:
                no_cache_fields.extend(_fields(arg))
        elif name == "private":
            if arg is None:
                vals["private"] = True
            else:
                private_fields.extend(_fields(arg))
        elif name:
            ext.append((name, arg))
    for name in invalid:
        attr = _DELTA_DIRECTIVES.get(name)
        if attr is not None:
            vals[attr] = 0
        elif name == "max-stale":
            vals["max_stale"] = 0.0
    return CacheControl(
        no_cache_fields=tuple(dict.fromkeys(no_cache_fields)),
        private_fields=tuple(dict.fromkeys(private_fields)),
        extensions=tuple(ext),
        **vals,  # type: ignore[arg-type]
    )


def parse_cache_control(v: str | None) -> CacheControl:
    """Parse a Cache-Control field value (all lines joined with ", "); None -> no directives."""
    if not v:
        return EMPTY
    return _parse(v) if len(v) <= 1024 else _parse.__wrapped__(v)
