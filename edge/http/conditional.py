"""Conditional requests (RFC 9110 §13): precondition evaluation and If-Range.

Entity-tags are parsed properly (a comma may occur inside an opaque-tag, RFC 9110 §8.8.3);
a member that does not parse never matches, which makes If-Match fail closed (412) and
If-None-Match fail open (full response). An origin ETag that is not quoted is taken as a
strong tag with that text, so clients that echo it back still match.

Evaluate preconditions only when the response without them would be 2xx (or 412),
RFC 9110 §13.2.1; for the edge that means a stored or fetched 200/206.

RFC 9111 §4.3.2 calls If-Match and If-Unmodified-Since "not applicable to a cache". The edge
evaluates them anyway against the stored validators (as nginx does): in front of S3 it is the
only HTTP server the client can reach, and a stored response it may reuse carries the
validators the origin would compare. If-None-Match takes precedence over If-Modified-Since.
"""

from __future__ import annotations

from enum import Enum

from edge.http import Headers
from edge.http.dates import parse_http_date


class Precondition(Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not-modified"  # 304
    PRECONDITION_FAILED = "precondition-failed"  # 412


ETag = tuple[bool, str]  # (weak, opaque-tag including its quotes)


def parse_etag(v: str | None) -> ETag | None:
    """One entity-tag: ``"x"`` or ``W/"x"``; an unquoted value counts as a strong tag."""
    if v is None:
        return None
    v = v.strip(" \t")
    weak = v.startswith("W/")
    body = v[2:] if weak else v
    if len(body) >= 2 and body[0] == '"' and body[-1] == '"' and '"' not in body[1:-1]:
        return weak, body
    if weak or not body or '"' in body or "," in body or " " in body:
        return None
    return False, f'"{body}"'


def parse_etag_list(v: str) -> list[ETag | None] | None:
    """The members of If-Match / If-None-Match; None for ``*``; unparsable members are None."""
    s = v.strip(" \t")
    if s == "*":
        return None
    out: list[ETag | None] = []
    i, n = 0, len(s)
    while i < n:
        while i < n and s[i] in " \t,":
            i += 1
        if i >= n:
            break
        start = i
        if s.startswith('W/"', i) or s[i] == '"':
            q = s.index('"', i) + 1
            end = s.find('"', q)
            if end < 0:
                out.append(None)
                break
            i = end + 1
            out.append(parse_etag(s[start:i]))
            # anything but OWS before the next comma spoils this member
            j = i
            while j < n and s[j] in " \t":
                j += 1
            if j < n and s[j] != ",":
                out[-1] = None
                while j < n and s[j] != ",":
                    j += 1
            i = j
        else:
            end = s.find(",", i)
            end = n if end < 0 else end
            out.append(parse_etag(s[start:end]))
            i = end
    return out


def strong_match(a: ETag | None, b: ETag | None) -> bool:
    """RFC 9110 §8.8.3.2: both strong and the same opaque-tag."""
    return a is not None and b is not None and not a[0] and not b[0] and a[1] == b[1]


def weak_match(a: ETag | None, b: ETag | None) -> bool:
    """RFC 9110 §8.8.3.2: the same opaque-tag, either or both weak."""
    return a is not None and b is not None and a[1] == b[1]


def evaluate_preconditions(
    method: str,
    req: Headers,
    etag: str | None,
    last_modified: float | None,
    *,
    date: float | None = None,
) -> Precondition:
    """RFC 9110 §13.2.2, in its order. ``etag``/``last_modified`` describe the selected
    representation (None if it has none). ``date`` is the stored response's Date, which a
    cache uses for If-Modified-Since when there is no Last-Modified (RFC 9111 §4.3.2).

    A date field holding anything but one valid HTTP-date (a list of dates included) is
    ignored (§13.1.3, §13.1.4): ``parse_http_date`` returns None for it.
    https://www.rfc-editor.org/rfc/rfc9110#section-13.2.2"""
    current = parse_etag(etag)
    safe = method in ("GET", "HEAD")
    # Step 1: If-Match; strong comparison; "*" true when a representation exists.
    # https://www.rfc-editor.org/rfc/rfc9110#section-13.1.1
    if "if-match" in req:
        members = parse_etag_list(req["if-match"])
        if members is not None and not any(strong_match(m, current) for m in members):
            return Precondition.PRECONDITION_FAILED
    # Step 2: If-Unmodified-Since, only without If-Match.
    # https://www.rfc-editor.org/rfc/rfc9110#section-13.1.4
    elif "if-unmodified-since" in req and last_modified is not None:
        ius = parse_http_date(req["if-unmodified-since"])
        if ius is not None and last_modified > ius:
            return Precondition.PRECONDITION_FAILED
    # Step 3: If-None-Match; weak comparison; "*" false when a representation exists.
    # https://www.rfc-editor.org/rfc/rfc9110#section-13.1.2
    if "if-none-match" in req:
        members = parse_etag_list(req["if-none-match"])
        if members is None or any(weak_match(m, current) for m in members):
            return Precondition.NOT_MODIFIED if safe else Precondition.PRECONDITION_FAILED
    # Step 4: If-Modified-Since, only for GET/HEAD and without If-None-Match.
    # https://www.rfc-editor.org/rfc/rfc9110#section-13.1.3
    elif safe and "if-modified-since" in req:
        ims = parse_http_date(req["if-modified-since"])
        modified = last_modified if last_modified is not None else date
        if ims is not None and modified is not None and modified <= ims:
            return Precondition.NOT_MODIFIED
    # Step 5: If-Range goes with the Range header: see if_range_ok.
    # https://www.rfc-editor.org/rfc/rfc9110#section-13.1.5
    return Precondition.PROCEED


def if_range_ok(
    req: Headers, etag: str | None, last_modified: float | None, *, date: float | None = None
) -> bool:
    """RFC 9110 §13.1.5: may the Range header be honoured? True without If-Range.

    An entity-tag must match with the strong comparison (so a weak tag never does). A date
    must equal Last-Modified exactly, and Last-Modified must be a strong validator: per
    §8.8.2.2 that needs the response's ``date`` at least one second after it; without a
    ``date`` the Last-Modified counts as weak and the full representation is sent (safe).
    Anything unparsable: send the full representation."""
    v = req.get("if-range")
    if v is None:
        return True
    v = v.strip(" \t")
    if v.startswith(('"', "W/")):
        return strong_match(parse_etag(v), parse_etag(etag))
    when = parse_http_date(v)
    if when is None or last_modified is None or date is None:
        return False
    return date - last_modified >= 1.0 and when == last_modified
