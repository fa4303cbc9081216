"""Several stored variants of one URL (Vary), as Varnish and nginx keep them.

A response with ``Vary: f1, f2`` is stored under a variant key derived from the request's
normalised values of those fields; the URL's own key then holds a small *pointer* meta (size
0) naming the fields and a generation. A request finds the pointer, computes its variant key
and looks that up. Purging or invalidating the URL removes the pointer; the next response
creates a pointer with a new generation, so variants stored before are never reachable again
(they age out of the cache like any unused entry).
"""

from __future__ import annotations

import os
from typing import Any

from edge.http.cachekey import vary_values
from edge.store.meta import ObjectMeta

POINTER = "\x00vary"  # not a header name: marks a pointer meta's vary table
GEN = "\x00gen"
SEP = "\x1f"


def is_pointer(meta: ObjectMeta) -> bool:
    return POINTER in meta.vary


def primary_of(key: str) -> str:
    return key.partition(SEP)[0]


def variant_key(primary: str, gen: str, fields: list[str], req: dict[str, str]) -> str:
    vals = vary_values(fields, req)
    canon = "&".join(f"{k}={v}" for k, v in sorted(vals.items()))
    return f"{primary}{SEP}{gen}{SEP}{canon}"


def resolve(store: Any, key: str, req: dict[str, str]) -> tuple[str, ObjectMeta | None]:
    """(the key to use for this request, its stored meta or None)."""
    meta = store.get_meta(key)
    if meta is None or POINTER not in meta.vary:
        return key, meta
    if meta.soft_purged:  # a soft purge of a varying URL: refetch its variants
        return key, None
    vkey = variant_key(key, meta.vary[GEN], meta.vary[POINTER].split(","), req)
    return vkey, store.get_meta(vkey)


def plan_variant(store: Any, key: str, fields: list[str], req: dict[str, str],
                 now: float) -> tuple[str, ObjectMeta | None]:
    """Where a varying response to ``req`` is stored, and the pointer to write first (None
    when the current pointer already names these fields)."""
    primary = primary_of(key)
    cur = store.get_meta(primary)
    joined = ",".join(fields)
    if (cur is not None and POINTER in cur.vary and cur.vary[POINTER] == joined
            and not cur.soft_purged):
        return variant_key(primary, cur.vary[GEN], fields, req), None
    gen = os.urandom(4).hex()
    pointer = ObjectMeta(key=primary, size=0, status=200, headers={}, request_time=now,
                         response_time=now, vary={POINTER: joined, GEN: gen})
    return variant_key(primary, gen, fields, req), pointer
