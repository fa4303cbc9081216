"""Byte ranges (RFC 9110 §14): parsing, satisfiability, Content-Range, multipart/byteranges.

All ranges are half-open ``[start, end)`` byte offsets. Decisions:
- a Range header that is syntactically invalid (unknown unit, bad spec, last < first) is
  ignored: NONE, the full 200 is sent (§14.2);
- unsatisfiable specs are dropped; if none is left: UNSATISFIABLE, 416 with
  ``Content-Range: bytes */LEN`` (§14.1.1, §15.5.17);
- overlapping or adjacent ranges are coalesced (§14.6 allows it in any order); the parts keep
  the order in which they were first requested (§14.6 SHOULD);
- more than ``max_ranges`` ranges left after coalescing, or an absurd number of specs, is
  treated as abuse and the header is ignored (§14.2 permits this; nginx and Apache do the same);
- an empty representation has no byte to select, so Range is ignored for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

MAX_SPECS = 1024
_HUGE = 10**18
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")


class RangeKind(Enum):
    NONE = "none"  # no (usable) Range: send the whole representation
    SATISFIABLE = "satisfiable"  # 206
    UNSATISFIABLE = "unsatisfiable"  # 416


@dataclass(slots=True)
class RangeSpec:
    kind: RangeKind
    ranges: list[tuple[int, int]] = field(default_factory=list)


_NONE = RangeKind.NONE


def _pos(digits: str) -> int | None:
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    digits = digits.lstrip("0") or "0"
    return _HUGE if len(digits) > 18 else int(digits)


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping/adjacent ranges; each merged range sits where its first member was."""
    order = sorted(range(len(ranges)), key=lambda i: ranges[i])
    groups: list[tuple[int, int, int]] = []  # (first index requested, start, end)
    for i in order:
        s, e = ranges[i]
        if groups and s <= groups[-1][2]:
            first, gs, ge = groups[-1]
            groups[-1] = (min(first, i), gs, max(ge, e))
        else:
            groups.append((i, s, e))
    groups.sort()
    return [(s, e) for _, s, e in groups]


def parse_range(header: str | None, length: int, max_ranges: int = 16) -> RangeSpec:
    """Parse a Range header against a representation of ``length`` bytes (see module doc)."""
    if header is None or length <= 0:
        return RangeSpec(_NONE)
    unit, eq, rest = header.partition("=")
    if not eq or unit.strip(" \t").lower() != "bytes":
        return RangeSpec(_NONE)
    specs = rest.split(",")
    if len(specs) > MAX_SPECS:
        return RangeSpec(_NONE)
    wanted: list[tuple[int, int]] = []
    seen_spec = False
    for spec in specs:
        spec = spec.strip(" \t")
        if not spec:
            continue  # empty list elements are allowed and ignored (RFC 9110 §5.6.1)
        seen_spec = True
        first_s, dash, last_s = spec.partition("-")
        if not dash:
            return RangeSpec(_NONE)
        if first_s == "":  # suffix-range "-n": the last n bytes
            n = _pos(last_s)
            if n is None:
                return RangeSpec(_NONE)
            if n > 0:
                wanted.append((max(0, length - n), length))
            continue
        first = _pos(first_s)
        if first is None:
            return RangeSpec(_NONE)
        if last_s == "":  # "a-": from a to the end
            if first < length:
                wanted.append((first, length))
            continue
        last = _pos(last_s)
        if last is None or last < first:
            return RangeSpec(_NONE)  # §14.1.1: an int-range with last < first is invalid
        if first < length:
            wanted.append((first, min(last, length - 1) + 1))
    if not seen_spec:
        return RangeSpec(_NONE)
    if not wanted:
        return RangeSpec(RangeKind.UNSATISFIABLE)
    merged = _coalesce(wanted)
    if len(merged) > max_ranges:
        return RangeSpec(_NONE)
    return RangeSpec(RangeKind.SATISFIABLE, merged)


def content_range(start: int, end: int, length: int) -> str:
    """``bytes first-last/length`` for the half-open range [start, end)."""
    if not 0 <= start < end <= length:
        raise ValueError(f"bad range [{start}, {end}) for length {length}")
    return f"bytes {start}-{end - 1}/{length}"


def unsatisfied_range(length: int) -> str:
    """The Content-Range of a 416 (RFC 9110 §14.4)."""
    return f"bytes */{length}"


def multipart_content_type(boundary: str) -> str:
    return f"multipart/byteranges; boundary={boundary}"


def multipart_plan(
    ranges: list[tuple[int, int]], length: int, content_type: str | None, boundary: str
) -> tuple[list[tuple[bytes, int, int]], bytes, int]:
    """Lay out a multipart/byteranges body (RFC 9110 §14.6, RFC 2046 §5.1.1).

    Returns each part's header bytes with its half-open range, the closing delimiter, and the
    exact body length, so Content-Length is known before a single body byte is read. The
    body is: for each part ``header + representation[start:end]``, then ``closing``."""
    if not 1 <= len(boundary) <= 70 or boundary.endswith(" ") or not set(boundary) <= _BCHARS:
        raise ValueError(f"invalid multipart boundary {boundary!r}")
    if content_type:  # from the origin: never let it break the part header
        content_type = "".join(c if " " <= c <= "~" else " " for c in content_type).strip()
    ctype = f"Content-Type: {content_type}\r\n" if content_type else ""
    parts: list[tuple[bytes, int, int]] = []
    total = 0
    for i, (start, end) in enumerate(ranges):
        lead = "" if i == 0 else "\r\n"
        head = (
            f"{lead}--{boundary}\r\n{ctype}"
            f"Content-Range: {content_range(start, end, length)}\r\n\r\n"
        ).encode("latin-1")
        parts.append((head, start, end))
        total += len(head) + (end - start)
    closing = f"\r\n--{boundary}--\r\n".encode("latin-1")
    return parts, closing, total + len(closing)
