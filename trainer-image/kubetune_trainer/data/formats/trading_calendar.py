"""Calendar rules of the trading format: tickers, gaps, and when news becomes known.

- Tickers: surrounding whitespace is dropped and letters are upper-cased, in prices and
  news alike (` acme` and `ACME` are one series); nothing else is changed (`BRK.B` stays).
- Gaps: between two consecutive rows of a ticker, the business days (Monday to Friday)
  with no row are counted. More than `trading.maxGapDays` is a gap: with `trading.onGap:
  error` (default) it is a bad row (the row after the gap), and the series is cut there
  either way under badRows: skip (no example's window or horizon spans a gap); with
  `onGap: warn` it is a counted warning and the series is used as it is.
- News time: `date` is `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]` (a space may replace the
  `T`), in the market's local time; a UTC offset is refused (convert it first). News
  stamped at or after `trading.marketClose` (default 16:00) on day D was not known when D
  closed: it counts from the ticker's next trading day after D. News without a time, or
  before the close, counts from D itself.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from datetime import date, timedelta

from ..report import RowError

_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2})(?::(\d{2}))?)?$")


def ticker_key(raw: str) -> str:
    """The series a ticker spelling belongs to."""
    return raw.strip().upper()


def missing_business_days(a: str, b: str) -> int:
    """Weekdays strictly between ISO dates a < b."""
    start, end = date.fromisoformat(a) + timedelta(days=1), date.fromisoformat(b)
    days = (end - start).days
    if days <= 0:
        return 0
    weeks, rest = divmod(days, 7)
    extra = sum((start + timedelta(days=i)).weekday() < 5 for i in range(rest))
    return weeks * 5 + extra


def news_stamp(value: str, key: str = "date") -> tuple[str, str]:
    """(date, time or "") of a news timestamp, or RowError."""
    m = _STAMP.match(value)
    try:
        if not m:
            raise ValueError
        date.fromisoformat(m.group(1))
        if m.group(2):
            hh, mm = map(int, m.group(2).split(":"))
            if hh > 23 or mm > 59 or int(m.group(3) or 0) > 59:
                raise ValueError
    except ValueError:
        hint = " (give the market's local time without a UTC offset)" if re.search(
            r"(Z|[+-]\d{2}:?\d{2})$", value) else ""  # fmt: skip
        raise RowError(
            f"field `{key}` {value!r} is not a date (YYYY-MM-DD) or a date and time "
            f"(YYYY-MM-DDTHH:MM){hint}"
        ) from None
    return m.group(1), m.group(2) or ""


def known_from(day: str, time: str, close: str, trading_days: list[str]) -> str | None:
    """The first trading day whose examples may read news stamped `day time`: `day` itself
    without a time or before the close, else the next trading day (None: after the data)."""
    if not time or time < close:
        return day
    i = bisect_right(trading_days, day)
    return trading_days[i] if i < len(trading_days) else None
