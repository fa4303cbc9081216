"""HTTP-date parsing and formatting (RFC 9110 §5.6.7).

Recipients must accept all three historical formats; senders emit only IMF-fixdate.
Month and day names are fixed English tokens, never the process locale.
"""

from __future__ import annotations

import calendar
import re
import time
from functools import lru_cache

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUM = {m.lower(): i + 1 for i, m in enumerate(_MONTHS)}
_LONG_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# IMF-fixdate:  Sun, 06 Nov 1994 08:49:37 GMT
_IMF = re.compile(
    r"([A-Za-z]{3}), (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT", re.ASCII
)
# rfc850-date:  Sunday, 06-Nov-94 08:49:37 GMT
_RFC850 = re.compile(
    r"([A-Za-z]{6,9}), (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT", re.ASCII
)
# asctime-date: Sun Nov  6 08:49:37 1994
_ASCTIME = re.compile(
    r"([A-Za-z]{3}) ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})", re.ASCII
)


def _build(year: int, month_name: str, day: int, hh: int, mm: int, ss: int) -> float | None:
    month = _MONTH_NUM.get(month_name.lower())
    if (
        month is None or year < 1 or hh > 23 or mm > 59 or ss > 60
    ):  # 60: leap second (RFC 9110 §5.6.7)
        return None
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    return float(calendar.timegm((year, month, day, hh, mm, min(ss, 59), 0, 0, 0)))


@lru_cache(maxsize=4096)
def _parse(s: str) -> float | None:
    m = _IMF.fullmatch(s)
    if m:
        if m.group(1).lower() not in {d.lower() for d in _DAYS}:
            return None
        return _build(int(m[4]), m[3], int(m[2]), int(m[5]), int(m[6]), int(m[7]))
    m = _RFC850.fullmatch(s)
    if m:
        if m.group(1).lower() not in _LONG_DAYS:
            return None
        # Two-digit year: RFC 9110 §5.6.7 says a year that looks more than 50 years in the
        # future is in the past. Without a clock we pivot at 70, as every HTTP stack does.
        yy = int(m[4])
        year = 2000 + yy if yy < 70 else 1900 + yy
        return _build(year, m[3], int(m[2]), int(m[5]), int(m[6]), int(m[7]))
    m = _ASCTIME.fullmatch(s)
    if m:
        if m.group(1).lower() not in {d.lower() for d in _DAYS}:
            return None
        return _build(int(m[7]), m[2], int(m[3].strip()), int(m[4]), int(m[5]), int(m[6]))
    return None


def parse_http_date(s: str | None) -> float | None:
    """Unix seconds for an HTTP-date in any of the three formats, else None (invalid)."""
    if s is None:
        return None
    s = s.strip(" \t")
    if not s or len(s) > 64:
        return None
    return _parse(s)


def format_http_date(ts: float) -> str:
    """IMF-fixdate for unix seconds (fractions dropped), e.g. 'Sun, 06 Nov 1994 08:49:37 GMT'."""
    t = time.gmtime(int(ts // 1))
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )
