"""The fill window: when an edge may spend bandwidth on proactive fill (local wall clock).

``"02:00-14:00"`` (start inclusive, end exclusive; ``"22:00-06:00"`` wraps midnight),
``"always"`` / ``"now"`` (always open) or ``"never"`` / ``"off"``. Pure: the caller passes
the local time of day, so tests need no clock.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
DAY = 86400


@dataclass(frozen=True, slots=True)
class FillWindow:
    start: int  # seconds after local midnight
    end: int
    spec: str

    @classmethod
    def parse(cls, spec: str) -> FillWindow:
        s = spec.strip().lower()
        if s in ("always", "now"):
            return cls(0, DAY, spec)
        if s in ("never", "off"):
            return cls(0, 0, spec)
        m = _SPAN.match(s)
        if not m:
            raise ValueError(f"fill window {spec!r}: want HH:MM-HH:MM, 'always' or 'never'")
        h1, m1, h2, m2 = (int(x) for x in m.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or (h1 == 24 and m1) or (h2 == 24 and m2):
            raise ValueError(f"fill window {spec!r}: bad time of day")
        start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
        if start == end:
            raise ValueError(f"fill window {spec!r}: empty (use 'always' for all day)")
        return cls(start, end, spec)

    @property
    def always(self) -> bool:
        return self.start == 0 and self.end == DAY

    @property
    def never(self) -> bool:
        return self.start == self.end

    def is_open(self, day_seconds: float) -> bool:
        """Open at this many seconds after local midnight?"""
        if self.never:
            return False
        if self.start < self.end:
            return self.start <= day_seconds < self.end
        return day_seconds >= self.start or day_seconds < self.end  # wraps midnight

    def seconds_until_open(self, day_seconds: float) -> float:
        """0 when open; else how long until the window opens (inf for 'never')."""
        if self.never:
            return float("inf")
        if self.is_open(day_seconds):
            return 0.0
        return (self.start - day_seconds) % DAY

    def seconds_until_close(self, day_seconds: float) -> float:
        if not self.is_open(day_seconds):
            return 0.0
        if self.always:
            return float("inf")
        return (self.end - day_seconds) % DAY or DAY


def local_day_seconds(now: float) -> float:
    """Seconds after local midnight (the edge's TZ) for unix time now."""
    t = time.localtime(now)
    return t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec + (now % 1)
