"""Byte ranges (RFC 9110 §14): parsing, Content-Range and multipart/byteranges planning."""

from __future__ import annotations

import re
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.http.ranges import (
    MAX_SPECS,
    RangeKind,
    RangeSpec,
    content_range,
    multipart_content_type,
    multipart_plan,
    parse_range,
    unsatisfied_range,
)

S, U, N = RangeKind.SATISFIABLE, RangeKind.UNSATISFIABLE, RangeKind.NONE


@pytest.mark.parametrize(
    ("header", "expected"),
    [  # RFC 9110 §14.1.2 examples, on a 10000-byte representation
        ("bytes=0-499", [(0, 500)]),
        ("bytes=500-999", [(500, 1000)]),
        ("bytes=-500", [(9500, 10000)]),
        ("bytes=9500-", [(9500, 10000)]),
        ("bytes=0-0,-1", [(0, 1), (9999, 10000)]),
        ("bytes= 0-999, 4500-5499, -1000", [(0, 1000), (4500, 5500), (9000, 10000)]),
        ("bytes=500-600,601-999", [(500, 1000)]),  # adjacent: coalesced
        ("bytes=500-700,601-999", [(500, 1000)]),  # overlapping: coalesced
        # clamping and unit case
        ("bytes=9000-20000", [(9000, 10000)]),
        ("bytes=-20000", [(0, 10000)]),
        ("BYTES=0-1", [(0, 2)]),
        ("bytes=0-00000000000000000000000000000009", [(0, 10)]),
        ("bytes=0-99999999999999999999999999999999999", [(0, 10000)]),
        # unsatisfiable members are dropped when another one is satisfiable
        ("bytes=20000-30000, 0-9", [(0, 10)]),
        ("bytes=-0, 5-5", [(5, 6)]),
        # order of first request is kept; coalesced ranges sit where first requested
        ("bytes=900-999, 0-99", [(900, 1000), (0, 100)]),
        ("bytes=900-999, 0-99, 50-950", [(0, 1000)]),
        ("bytes=5000-5999, 100-199, 5500-6500", [(5000, 6501), (100, 200)]),
        # empty list elements are ignored
        ("bytes=,0-1,,", [(0, 2)]),
    ],
)
def test_parse_satisfiable_table(header: str, expected) -> None:
    assert parse_range(header, 10000) == RangeSpec(S, expected)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes",
        "bytes=",
        "bytes=,",
        "items=0-1",
        "bytes=abc",
        "bytes=1",
        "bytes=5-1",  # last < first: invalid
        "bytes=0-1,5-1",  # one invalid spec spoils the header
        "bytes=--1",
        "bytes=+1-2",
        "bytes=1-+2",
        "bytes=0x1-2",
        "bytes=1 - 2",
        "bytes=-",
        "bytes=\u0661-\u0662",  # non-ASCII digits
        "bytes=0-1;x",
    ],
)
def test_invalid_range_header_is_ignored(header) -> None:
    assert parse_range(header, 10000).kind is N


@pytest.mark.parametrize(
    "header", ["bytes=10000-", "bytes=10000-10001", "bytes=-0", "bytes=20000-, 10000-10000"]
)
def test_unsatisfiable_range_yields_416(header) -> None:
    assert parse_range(header, 10000) == RangeSpec(U, [])


def test_range_on_empty_representation_is_ignored() -> None:
    assert parse_range("bytes=0-", 0).kind is N
    assert parse_range("bytes=-5", 0).kind is N


def test_too_many_ranges_after_coalescing_are_ignored() -> None:
    many = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(17))
    assert parse_range(many, 10000).kind is N
    assert parse_range(many, 10000, max_ranges=17).kind is S


def test_many_overlapping_ranges_coalesce_under_the_cap() -> None:
    header = "bytes=" + ",".join(["0-"] * 500)
    assert parse_range(header, 10000) == RangeSpec(S, [(0, 10000)])


def test_absurd_number_of_specs_is_ignored_without_work() -> None:
    header = "bytes=" + ",".join(["0-0"] * (MAX_SPECS + 1))
    assert parse_range(header, 10000).kind is N


def test_content_range_and_unsatisfied_range_match_rfc_examples() -> None:
    assert content_range(42, 1234, 1234) == "bytes 42-1233/1234"  # RFC 9110 §14.4
    assert unsatisfied_range(1234) == "bytes */1234"
    with pytest.raises(ValueError):
        content_range(5, 5, 10)
    with pytest.raises(ValueError):
        content_range(0, 11, 10)


def _assemble(data: bytes, plan) -> bytes:
    parts, closing, _ = plan
    return b"".join(h + data[s:e] for h, s, e in parts) + closing


def test_multipart_plan_matches_rfc_example_layout() -> None:
    data = bytes(range(256)) * 32  # 8192 bytes
    plan = multipart_plan(
        [(500, 1000), (7000, 8000)], 8000, "application/pdf", "THIS_STRING_SEPARATES"
    )
    parts, closing, total = plan
    assert parts[0][0] == (
        b"--THIS_STRING_SEPARATES\r\nContent-Type: application/pdf\r\n"
        b"Content-Range: bytes 500-999/8000\r\n\r\n"
    )
    assert parts[1][0].startswith(b"\r\n--THIS_STRING_SEPARATES\r\n")
    assert closing == b"\r\n--THIS_STRING_SEPARATES--\r\n"
    assert total == len(_assemble(data, plan))


def test_multipart_part_header_cannot_be_broken_by_the_content_type() -> None:
    parts, _, _ = multipart_plan([(0, 1)], 5, "text/plain\r\nX-Evil: 1\u00e9", "b")
    assert (
        parts[0][0]
        == b"--b\r\nContent-Type: text/plain  X-Evil: 1\r\nContent-Range: bytes 0-0/5\r\n\r\n"
    )


def test_multipart_without_content_type_omits_the_field() -> None:
    parts, _, _ = multipart_plan([(0, 1)], 5, None, "b")
    assert b"Content-Type" not in parts[0][0]


@pytest.mark.parametrize("boundary", ["", "x" * 71, "ends in space ", "bad\r\nboundary", "é"])
def test_multipart_rejects_invalid_boundaries(boundary: str) -> None:
    with pytest.raises(ValueError):
        multipart_plan([(0, 1)], 5, "text/plain", boundary)


# --- properties ------------------------------------------------------------------------------

_num = st.one_of(st.integers(0, 300), st.integers(0, 10**25))


@st.composite
def range_headers(draw) -> str:
    specs = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["int", "open", "suffix"]))
        a = draw(_num)
        if kind == "int":
            specs.append(f"{a}-{a + draw(st.integers(0, 300))}")
        elif kind == "open":
            specs.append(f"{a}-")
        else:
            specs.append(f"-{a}")
    ws = draw(st.sampled_from(["", " ", "\t", "  "]))
    return "bytes=" + f"{ws},{ws}".join(specs)


def _wanted_bytes(header: str, length: int) -> set[int]:
    """Reference model: the set of byte offsets the satisfiable specs ask for."""
    out: set[int] = set()
    for spec in header.removeprefix("bytes=").split(","):
        first, _, last = spec.strip(" \t").partition("-")
        if first == "":
            out.update(range(max(0, length - int(last)), length))
        elif last == "":
            out.update(range(int(first), length))
        else:
            out.update(range(int(first), min(int(last), length - 1) + 1))
    return out


@settings(max_examples=300, deadline=None)
@given(range_headers(), st.integers(1, 400))
def test_parsed_ranges_select_exactly_the_requested_bytes(header: str, length: int) -> None:
    spec = parse_range(header, length, max_ranges=64)
    wanted = _wanted_bytes(header, length)
    if not wanted:
        assert spec == RangeSpec(U, [])
        return
    assert spec.kind is S
    got: set[int] = set()
    for s, e in spec.ranges:
        assert 0 <= s < e <= length  # every satisfiable range lies within [0, len)
        got.update(range(s, e))
    assert got == wanted
    # disjoint and not adjacent: coalescing is complete
    ordered = sorted(spec.ranges)
    assert all(a[1] < b[0] for a, b in zip(ordered, ordered[1:], strict=False))


@settings(max_examples=200, deadline=None)
@given(range_headers(), st.integers(1, 10**12), st.integers(1, 16))
def test_parse_range_respects_the_cap_and_bounds(header: str, length: int, cap: int) -> None:
    spec = parse_range(header, length, max_ranges=cap)
    if spec.kind is S:
        assert 1 <= len(spec.ranges) <= cap
        assert all(0 <= s < e <= length for s, e in spec.ranges)
    else:
        assert spec.ranges == []


@given(st.text(max_size=80), st.integers(0, 1000))
def test_parse_range_never_raises_on_arbitrary_text(text: str, length: int) -> None:
    for header in (text, "bytes=" + text):
        spec = parse_range(header, length)
        assert all(0 <= s < e <= length for s, e in spec.ranges)


_CR = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@given(st.integers(0, 10**15), st.integers(1, 10**15), st.integers(0, 10**15))
def test_content_range_round_trips(start: int, size: int, extra: int) -> None:
    end, length = start + size, start + size + extra
    m = _CR.fullmatch(content_range(start, end, length))
    assert m is not None
    first, last, total = map(int, m.groups())
    assert (first, last + 1, total) == (start, end, length)
    # the printed range, sent back as a Range header, selects the same bytes
    assert parse_range(f"bytes={first}-{last}", length) == RangeSpec(S, [(start, end)])


@settings(max_examples=150, deadline=None)
@given(
    st.binary(min_size=1, max_size=600),
    st.lists(st.tuples(st.integers(0, 599), st.integers(1, 200)), min_size=1, max_size=6),
    st.sampled_from(["video/mp2t", "application/octet-stream", None]),
)
def test_multipart_body_length_is_exact_and_parts_parse_back(data, raw, ctype) -> None:
    length = len(data)
    header = "bytes=" + ",".join(f"{a % length}-{a % length + n - 1}" for a, n in raw)
    spec = parse_range(header, length)
    assert spec.kind is S
    boundary = "edgecdn-8f2c1e77a9b04d53"
    plan = multipart_plan(spec.ranges, length, ctype, boundary)
    parts, closing, total = plan
    body = _assemble(data, plan)
    assert total == len(body) == sum(len(h) + e - s for h, s, e in parts) + len(closing)
    msg = BytesParser().parsebytes(
        f"Content-Type: {multipart_content_type(boundary)}\r\n\r\n".encode() + body
    )
    payloads = msg.get_payload()
    assert len(payloads) == len(spec.ranges)
    for part, (s, e) in zip(payloads, spec.ranges, strict=True):
        assert part["Content-Range"] == content_range(s, e, length)
        assert part.get_payload(decode=True) == data[s:e]
