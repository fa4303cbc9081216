"""A tier's byte accounting: a policy instance plus what the store knows of each resident key.

Callers hold the store lock; nothing here does I/O.  Victims come back as (key, path) so the
files can be unlinked later, off the hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.policy import Policy


class PolicyTier:
    def __init__(self, policy: Policy, capacity: int) -> None:
        self.policy = policy
        self.capacity = max(0, min(int(capacity), int(policy.capacity)))
        self.paths: dict[str, str] = {}  # resident key -> path of the chunk it accounts

    @property
    def used(self) -> int:
        return self.policy.used

    @property
    def objects(self) -> int:
        return len(self.paths)

    def fits(self, size: int) -> bool:
        return 0 < size <= self.capacity or (size == 0 and self.capacity > 0)

    def insert(self, key: str, size: int, path: str) -> list[tuple[str, str]]:
        """key (stored at path) is now resident; returns the victims that make room for it.
        Re-inserting the same path is a no-op; another path (new version) replaces it."""
        old = self.paths.get(key)
        if old == path:
            return []
        if old is not None:
            self.remove(key)
        out = self.make_room(size)
        self.policy.insert(key, size)
        self.paths[key] = path
        return out

    def make_room(self, size: int) -> list[tuple[str, str]]:
        need = self.policy.used + size - self.capacity
        return self.evict(need) if need > 0 else []

    def evict(self, nbytes: int) -> list[tuple[str, str]]:
        out = []
        for k in self.policy.victims(nbytes):
            p = self.paths.pop(k, None)
            if p is not None:
                out.append((k, p))
        return out

    def remove(self, key: str, path: str | None = None) -> bool:
        """External removal; with path, only if key still accounts that very file."""
        cur = self.paths.get(key)
        if cur is None or (path is not None and cur != path):
            return False
        del self.paths[key]
        self.policy.remove(key)
        return True

    def check(self) -> None:
        self.policy.check()
        assert len(self.policy) == len(self.paths), (len(self.policy), len(self.paths))
        for k in self.paths:
            assert k in self.policy, f"{k!r} accounted but not in policy"
        assert self.policy.used <= max(self.capacity, 0) or not self.paths, (
            f"tier over capacity: {self.policy.used} > {self.capacity}")
