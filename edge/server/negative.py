"""Negative caching: small non-2xx answers (404, 410, 301...) kept in memory and reused.

A missing segment that a thousand players ask for costs one origin request per lifetime, not
one per player: what nginx's ``proxy_cache_valid 404``, Varnish's TTL on errors and
CloudFront's error-caching TTL give. Only answers RFC 9111 lets a shared cache store, whose
status this cache understands, with no Vary and no ``no-cache`` (they are never revalidated,
just fetched again), are kept, for their own freshness lifetime; a 404 or 410 that carries
none gets the operator's ``origin.negative_ttl`` (0 = off, nginx's default).

Per worker and in memory only, bounded in entries and bytes: a restart forgets them, which
costs origin requests and nothing else. An entry goes when its key is stored, purged or
invalidated in any worker (``Store.on_change``, handed to the event loop by the app: all
of this runs on the loop).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from edge.http.cachecontrol import parse_cache_control
from edge.http.freshness import current_age, freshness_lifetime
from edge.http.model import StoredResponse

# RFC 9110 §15.1's heuristically cacheable codes and the redirects with explicit freshness,
# minus those the chunk store holds (200, 206)
NEGATIVE_STATUS = frozenset({203, 204, 300, 301, 302, 307, 308, 404, 405, 410, 414, 451, 501})
TTL_STATUS = frozenset({404, 410})  # given origin.negative_ttl when they carry no freshness
MAX_ENTRIES = 10_000
MAX_BYTES = 16 * 1024 * 1024  # bodies are at most flights.RELAY_LIMIT each


@dataclass(slots=True)
class NegativeEntry:
    stored: StoredResponse
    body: bytes
    lifetime: float

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(k) + len(v) for k, v in self.stored.headers.items())


class NegativeCache:
    def __init__(self, default_ttl: float = 0.0, max_entries: int = MAX_ENTRIES,
                 max_bytes: int = MAX_BYTES) -> None:
        self.default_ttl = default_ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, NegativeEntry] = OrderedDict()
        self.bytes = 0

    def lifetime(self, stored: StoredResponse) -> float:
        """How long this answer may be reused (0: not kept)."""
        if stored.status not in NEGATIVE_STATUS or "vary" in stored.headers:
            return 0.0
        cc = parse_cache_control(stored.headers.get("cache-control"))
        if cc.no_cache:
            return 0.0
        life = freshness_lifetime(stored.headers, status=stored.status,
                                  response_time=stored.response_time)
        explicit = cc.s_maxage is not None or cc.max_age is not None or \
            "expires" in stored.headers
        if life <= 0 and not explicit and stored.status in TTL_STATUS:
            life = self.default_ttl
        return life

    def put(self, key: str, stored: StoredResponse, body: bytes) -> float:
        """Keep the answer if it may be reused; its lifetime (0: not kept)."""
        life = self.lifetime(stored)
        if life <= current_age(stored, stored.response_time):
            return 0.0
        e = NegativeEntry(stored, body, life)
        if e.size > self.max_bytes:
            return 0.0
        self.forget(key)
        self.entries[key] = e
        self.bytes += e.size
        while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.size
        return life

    def get(self, key: str, now: float) -> tuple[NegativeEntry, float] | None:
        """The entry and its current age while it is fresh (a stale one is dropped)."""
        e = self.entries.get(key)
        if e is None:
            return None
        age = current_age(e.stored, now)
        if age >= e.lifetime:
            self.forget(key)
            return None
        self.entries.move_to_end(key)
        return e, age

    def forget(self, key: str, prefix: bool = False) -> None:
        """Drop the entry of key, or every entry under it when prefix is set."""
        for k in ([k for k in self.entries if k.startswith(key)] if prefix else [key]):
            e = self.entries.pop(k, None)
            if e is not None:
                self.bytes -= e.size
