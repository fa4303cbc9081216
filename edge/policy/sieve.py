"""SIEVE: a FIFO queue with one visited bit and a hand that sweeps from old to new.

Zhang, Yang, Yue, Vigfusson, Rashmi, "SIEVE is Simpler than LRU: an Efficient Turn-Key
Eviction Algorithm for Web Caches", NSDI 2024.  A hit only sets the visited bit (no list
moves); the hand clears visited bits until it finds an unvisited object, evicts it and stays
there.  New objects enter at the head.  Used as a simulator reference, as in libCacheSim.
"""

from __future__ import annotations

from typing import ClassVar

from edge.policy.base import BasePolicy


class _Node:
    __slots__ = ("key", "size", "visited", "newer", "older")

    def __init__(self, key: str, size: int) -> None:
        self.key = key
        self.size = size
        self.visited = False
        self.newer: _Node | None = None
        self.older: _Node | None = None


class SievePolicy(BasePolicy):
    name: ClassVar[str] = "sieve"

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._nodes: dict[str, _Node] = {}
        self._head: _Node | None = None  # newest
        self._tail: _Node | None = None  # oldest
        self._hand: _Node | None = None

    def _touch(self, key: str, size: int) -> bool:
        node = self._nodes.get(key)
        if node is None:
            return False
        node.visited = True
        return True

    def _attach(self, key: str, size: int) -> None:
        node = _Node(key, size)
        self._nodes[key] = node
        node.older = self._head
        if self._head is not None:
            self._head.newer = node
        self._head = node
        if self._tail is None:
            self._tail = node

    def _unlink(self, node: _Node) -> None:
        if self._hand is node:
            self._hand = node.newer
        if node.newer is not None:
            node.newer.older = node.older
        else:
            self._head = node.older
        if node.older is not None:
            node.older.newer = node.newer
        else:
            self._tail = node.newer
        del self._nodes[node.key]

    def _detach(self, key: str) -> int | None:
        node = self._nodes.get(key)
        if node is None:
            return None
        self._unlink(node)
        return node.size

    def _evict(self) -> tuple[str, int] | None:
        node = self._hand or self._tail
        if node is None:
            return None
        while node.visited:
            node.visited = False
            node = node.newer or self._tail
            assert node is not None
        self._hand = node  # _unlink moves the hand on to the next newer node
        self._unlink(node)
        return node.key, node.size

    def _resident(self, key: str) -> bool:
        return key in self._nodes

    def _count(self) -> int:
        return len(self._nodes)

    def _check(self) -> int:
        seen = 0
        total = 0
        node, prev = self._tail, None
        while node is not None:
            assert node.older is prev, "broken older link"
            assert self._nodes.get(node.key) is node, "node not indexed"
            seen += 1
            total += node.size
            prev, node = node, node.newer
        assert prev is self._head, "head is not the newest node"
        assert seen == len(self._nodes), "index and list disagree"
        assert self._hand is None or self._nodes.get(self._hand.key) is self._hand
        # and backwards
        back = 0
        node = self._head
        while node is not None:
            back += 1
            node = node.older
        assert back == seen
        return total
