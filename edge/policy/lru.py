"""Least recently used: the baseline every cache is compared with."""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

from edge.policy.base import BasePolicy


class LRUPolicy(BasePolicy):
    """Classic LRU over an OrderedDict (key -> size), oldest first."""

    name: ClassVar[str] = "lru"

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._od: OrderedDict[str, int] = OrderedDict()

    def _touch(self, key: str, size: int) -> bool:
        if key in self._od:
            self._od.move_to_end(key)
            return True
        return False

    def _attach(self, key: str, size: int) -> None:
        self._od[key] = size

    def _detach(self, key: str) -> int | None:
        return self._od.pop(key, None)

    def _evict(self) -> tuple[str, int] | None:
        return self._od.popitem(last=False) if self._od else None

    def _resident(self, key: str) -> bool:
        return key in self._od

    def _count(self) -> int:
        return len(self._od)

    def _check(self) -> int:
        assert all(s >= 0 for s in self._od.values())
        return sum(self._od.values())
