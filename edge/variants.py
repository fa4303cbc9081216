"""Several stored variants of one URL (Vary), as Varnish and nginx keep them.

A response with ``Vary: f1, f2`` is stored under a variant key derived from the request's
normalised values of those fields; the URL's own key then holds a small *pointer* meta (size
0) naming the fields and a generation. A request finds the pointer, computes its variant key
and looks that up. Purging or invalidating the URL removes the pointer; the next response
creates a pointer with a new generation, so variants stored before are never reachable again
(they age out of the cache like any unused entry).

A soft purge of the URL marks the pointer soft-purged with the time of the purge: every
variant stored before that time is then handed out soft-purged (revalidated with a
conditional request before use, a 304 refreshing it), like a soft-purged plain object;
variants stored or revalidated after it are used as they are.
"""

from __future__ import annotations

import os
from typing import Any

from edge.http.cachekey import vary_values
from edge.store.meta import VARY_GEN as GEN
from edge.store.meta import VARY_POINTER as POINTER
from edge.store.meta import VARY_PURGED as PURGED
from edge.store.meta import ObjectMeta

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
    purged_at = meta.vary.get(PURGED) if meta.soft_purged else None
    if meta.soft_purged and purged_at is None:  # soft-purged without a time: refetch
        return key, None
    vkey = variant_key(key, meta.vary[GEN], meta.vary[POINTER].split(","), req)
    vmeta = store.get_meta(vkey)
    if (purged_at is not None and vmeta is not None and not vmeta.soft_purged
            and vmeta.response_time <= _float(purged_at)):
        vmeta = vmeta.replace(soft_purged=True)  # stored before the purge: revalidate it
    return vkey, vmeta


def _float(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return float("inf")


def plan_variant(store: Any, key: str, fields: list[str], req: dict[str, str],
                 now: float) -> tuple[str, ObjectMeta | None]:
    """Where a varying response to ``req`` is stored, and the pointer to write first (None
    when the current pointer already names these fields)."""
    primary = primary_of(key)
    cur = store.get_meta(primary)
    joined = ",".join(fields)
    if (cur is not None and POINTER in cur.vary and cur.vary[POINTER] == joined
            and (not cur.soft_purged or PURGED in cur.vary)):
        # (a soft-purged pointer is kept: its other variants are revalidated, not lost)
        return variant_key(primary, cur.vary[GEN], fields, req), None
    gen = os.urandom(4).hex()
    pointer = ObjectMeta(key=primary, size=0, status=200, headers={}, request_time=now,
                         response_time=now, vary={POINTER: joined, GEN: gen})
    return variant_key(primary, gen, fields, req), pointer
