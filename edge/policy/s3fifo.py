"""S3-FIFO: a small probationary FIFO, a main FIFO with 2-bit reinsertion, and a ghost FIFO.

Yang, Zhang, Qiu, Yue, Rashmi, "FIFO queues are all you need for cache eviction", SOSP 2023.
Follows libCacheSim's ``S3FIFO.c`` defaults so the figures compare with published ones: small
queue 10% of bytes, ghost 90% (keys and sizes only), an object leaves small for main after
>= 2 hits there, main reinserts an object with freq > 0 (freq = min(freq, 3) - 1), a ghost hit
goes straight to main, objects >= the small queue's size are not admitted, and until the
first eviction a full small queue spills new objects into main.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

from edge.policy.base import BasePolicy

SMALL_RATIO = 0.10
GHOST_RATIO = 0.90
MOVE_TO_MAIN = 2


class S3FifoPolicy(BasePolicy):
    name: ClassVar[str] = "s3fifo"

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._small_cap = int(capacity * SMALL_RATIO)
        self._main_cap = capacity - self._small_cap
        self._ghost_cap = int(capacity * GHOST_RATIO)
        self._small: OrderedDict[str, int] = OrderedDict()
        self._main: OrderedDict[str, int] = OrderedDict()
        self._ghost: OrderedDict[str, int] = OrderedDict()
        self._freq: dict[str, int] = {}
        self._small_used = self._main_used = self._ghost_used = 0
        self._ghost_hit: str | None = None
        self._has_evicted = False

    def _touch(self, key: str, size: int) -> bool:
        f = self._freq.get(key)
        if f is not None:
            self._freq[key] = f + 1
            return True
        gsize = self._ghost.pop(key, None)
        if gsize is not None:
            self._ghost_used -= gsize
        self._ghost_hit = key if gsize is not None else None
        return False

    def admit(self, key: str, size: int) -> bool:
        if size > self._small_cap or size > self.capacity:
            return False
        return size < self._small_cap or self._ghost_hit == key

    def _attach(self, key: str, size: int) -> None:
        to_main = self._ghost_hit == key or (
            not self._has_evicted and self._small_used >= self._small_cap
        )
        self._ghost_hit = None
        if to_main:
            self._main[key] = size
            self._main_used += size
        else:
            self._small[key] = size
            self._small_used += size
        self._freq[key] = 0

    def _detach(self, key: str) -> int | None:
        if self._freq.pop(key, None) is None:
            return None
        size = self._small.pop(key, None)
        if size is not None:
            self._small_used -= size
            return size
        size = self._main.pop(key)
        self._main_used -= size
        return size

    def _evict(self) -> tuple[str, int] | None:
        self._has_evicted = True
        if self._main_used <= self._main_cap and self._small:
            got = self._evict_small()
            if got is not None:
                return got
        return self._evict_main()

    def _evict_small(self) -> tuple[str, int] | None:
        small, freq = self._small, self._freq
        while small:
            key, size = small.popitem(last=False)
            self._small_used -= size
            if freq[key] >= MOVE_TO_MAIN:
                freq[key] = 0
                self._main[key] = size
                self._main_used += size
                continue
            del freq[key]
            self._to_ghost(key, size)
            return key, size
        return None

    def _evict_main(self) -> tuple[str, int] | None:
        main, freq = self._main, self._freq
        while main:
            key, size = main.popitem(last=False)
            f = freq[key]
            if f >= 1:
                main[key] = size
                freq[key] = min(f, 3) - 1
                continue
            del freq[key]
            self._main_used -= size
            return key, size
        return None

    def _to_ghost(self, key: str, size: int) -> None:
        if size > self._ghost_cap:
            return
        ghost = self._ghost
        while self._ghost_used + size > self._ghost_cap:
            self._ghost_used -= ghost.popitem(last=False)[1]
        ghost[key] = size
        self._ghost_used += size

    def _resident(self, key: str) -> bool:
        return key in self._freq

    def _count(self) -> int:
        return len(self._freq)

    def _check(self) -> int:
        assert not (self._small.keys() & self._main.keys()), "key in both small and main"
        assert set(self._freq) == self._small.keys() | self._main.keys(), "freq index stale"
        assert sum(self._small.values()) == self._small_used
        assert sum(self._main.values()) == self._main_used
        assert sum(self._ghost.values()) == self._ghost_used <= self._ghost_cap
        assert all(f >= 0 for f in self._freq.values())
        return self._small_used + self._main_used
