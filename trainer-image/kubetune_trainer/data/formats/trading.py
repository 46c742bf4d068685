"""trading: daily prices (CSV) + news (JSONL) -> SFT examples with a JSON recommendation.

Prices: `date,ticker,open,high,low,close,volume` (dates YYYY-MM-DD, increasing per ticker).
News (dataset.trading.news): `{date, ticker, headline, summary?, source?}` (summary and
source are optional strings; date may carry a time of day). Tickers, gaps and when a news
item becomes known (the market close) follow trading_calendar.

One example per ticker and day t that has `window` days of history before it and
`horizon` days after it. The prompt (input) holds, for the last `window` trading days,
the date, daily return % and z-scored close, then the indicators of trading_features, then
the news of that ticker known inside the window (at most 5, newest last): each headline
with its source, and its summary on the next line (whitespace collapsed, cut at a word
boundary to at most 240 characters). It reads nothing dated after t. The completion is
one JSON object, keys in this order:

    {"action": "buy" | "sell" | "hold", "target_price": <close at t + horizon, 2 dp>,
     "horizon_days": <horizon>, "confidence": <0..1, 2 dp>,
     "rationale": "<the features and headlines it rests on>"}

Labels come from the realized forward return over the horizon (hold inside
holdBandPct). `parse_recommendation(text)` reads the layout back for evaluation.
Splits are chronological (see chronological_split): no shuffling across time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from kubetune_api.spec_data import TradingOptions
from kubetune_trainer.errors import BadDataError

from ..decoding import Decoding, SourceError
from ..duplicates import Dedupe
from ..report import Problems, RowError
from ..sources import Row, read_rows
from .base import Context, Record, mapped_hint, number, rename, text
from .trading_calendar import known_from, missing_business_days, news_stamp, ticker_key
from .trading_features import features, label

MAX_NEWS = 5
MAX_SUMMARY = 240  # characters of a news summary shown under its headline
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date(d: Record, key: str = "date") -> str:
    v = text(d, key)
    try:
        if not _DATE.match(v):
            raise ValueError
        date.fromisoformat(v)
    except ValueError:
        raise RowError(f"field `{key}` {v!r} is not a date (YYYY-MM-DD)") from None
    return v


def price_row(d: Record) -> dict[str, Any]:
    check = Problems()
    ticker = check(text, d, "ticker")
    day = check(_date, d)
    o, h, lo, c = (check(number, d, k) for k in ("open", "high", "low", "close"))
    vol = check(number, d, "volume")
    if vol is not None and vol < 0:
        check.add(f"volume {vol} is negative")
    check.done()
    ticker = ticker_key(ticker)
    if min(o, h, lo, c) <= 0:
        check.add("prices must be positive")
    elif h < lo:
        check.add(f"high {h} is below low {lo}")
    elif not (lo <= o <= h and lo <= c <= h):
        check.add(f"open/close outside the day's range [{lo}, {h}]")
    check.done()
    return {"ticker": ticker, "date": day, "close": c, "volume": vol}


def _read_prices(rows: Iterable[Row], ctx: Context) -> dict[str, list[dict[str, Any]]]:
    series: dict[str, list[dict[str, Any]]] = {}
    opts = ctx.dataset.trading or TradingOptions()
    for row in rows:
        ctx.report.stats.read += 1
        if row.data is None:
            ctx.report.problem(row.where, row.error or "unreadable row")
            continue
        try:
            p = price_row(rename(row.data, ctx.dataset.field_map))
            past = series.get(p["ticker"])
            if past and p["date"] <= past[-1]["date"]:
                raise RowError(
                    f"date {p['date']} out of order for {p['ticker']} (previous row: "
                    f"{past[-1]['date']}); rows of a ticker must have increasing dates"
                )
        except RowError as exc:
            ctx.report.problem(row.where, mapped_hint(str(exc), ctx.dataset.field_map))
            continue
        p["where"], p["seg"] = row.where, past[-1]["seg"] if past else 0
        gap = missing_business_days(past[-1]["date"], p["date"]) if past else 0
        if gap > opts.max_gap_days:
            why = (f"{gap} business days missing for {p['ticker']} between {past[-1]['date']} "
                   f"and {p['date']} (trading.maxGapDays {opts.max_gap_days})")  # fmt: skip
            if opts.on_gap == "warn":
                ctx.report.warn(row.where, why)
            else:
                p["seg"] += 1  # under badRows: skip no example spans the gap
                ctx.report.problem(row.where, f"{why}; fill the gap, or set trading.onGap: "
                                   "warn to use the series as it is", dropped=False)  # fmt: skip
        series.setdefault(p["ticker"], []).append(p)
    return series


def _read_news(
    uri: str, series: dict[str, list[dict[str, Any]]], ctx: Context
) -> dict[str, list[dict[str, str]]]:
    """News by ticker, each with `known`: the first trading day that may read it."""
    news: dict[str, list[dict[str, str]]] = {}
    ds = ctx.dataset
    close = (ds.trading or TradingOptions()).market_close
    dates = {ticker: [p["date"] for p in s] for ticker, s in series.items()}
    decoding = Decoding(ds.encoding, ds.on_decode_error, ctx.report.warn)
    rows = read_rows(uri, ds.streaming, ctx.cache_dir, ctx.endpoint, decoding)
    for row in Dedupe(ctx.report, ds.dedupe).rows(rows):
        ctx.report.stats.read += 1
        if row.data is None:
            ctx.report.problem(row.where, row.error or "unreadable row")
            continue
        try:
            d, check = row.data, Problems()
            ticker = check(text, d, "ticker")
            if ticker is not None and ticker_key(ticker) not in series:
                check.add(f"unknown ticker {ticker_key(ticker)!r} (not in the price file)")
            stamp = check(text, d, "date")
            day, time = (check(news_stamp, stamp) if stamp else None) or (None, None)
            item = {"date": f"{day} {time}".strip() if day else "",
                    "headline": check(text, d, "headline"),
                    "summary": shorten(check(text, d, "summary", required=False) or ""),
                    "source": check(text, d, "source", required=False)}  # fmt: skip
            check.done()
            ticker = ticker_key(ticker)
        except RowError as exc:
            ctx.report.problem(row.where, str(exc))
            continue
        known = known_from(day, time, close, dates[ticker])
        if known is not None:  # else: known only after the last price row
            news.setdefault(ticker, []).append({**item, "known": known})
    for items in news.values():
        items.sort(key=lambda n: (n["known"], n["date"]))
    return news


def shorten(summary: str, limit: int = MAX_SUMMARY) -> str:
    """Whitespace collapsed; longer than `limit`: cut at a word boundary and end with `…`."""
    summary = " ".join(summary.split())
    if len(summary) <= limit:
        return summary
    cut = summary[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:.") + "…"


def example_prompt(
    ticker: str, series: list[dict[str, Any]], t: int, opts: TradingOptions,
    news: list[dict[str, str]],
) -> tuple[str, Any, list[dict[str, str]]]:  # fmt: skip
    """The input text for day t (reads series[: t + 1] and news dated inside the window)."""
    w = opts.window
    f = features([p["close"] for p in series], [p["volume"] for p in series], t, w)
    days = series[t - w + 1 : t + 1]
    start, end = days[0]["date"], days[-1]["date"]
    seen = [n for n in news if start <= n["known"] <= end][-MAX_NEWS:]
    table = [
        f"{p['date']} {r:+.2f} {z:+.2f}"
        for p, r, z in zip(days, f.returns_pct, f.z_close, strict=True)
    ]
    headlines: list[str] = []
    for n in seen:
        headlines.append(
            f"- {n['date']} {n['headline']}" + (f" ({n['source']})" if n["source"] else "")
        )
        if n.get("summary"):
            headlines.append(f"  {n['summary']}")
    lines = [
        f"Ticker: {ticker}  Date: {end}  Close: {series[t]['close']:.2f}",
        f"Last {w} trading days (date, return %, z-close):",
        *table,
        f"Indicators: volatility {f.volatility_pct:.2f}%/day, RSI14 {f.rsi14:.1f}, "
        f"close/SMA{w} {f.sma_ratio:.3f}, volume/avg{w} {f.volume_ratio:.2f}, "
        f"5-day return {f.return_5d_pct:+.2f}%",
        "News in window:" if seen else "News in window: none",
        *headlines,
        f"Recommend for the next {opts.horizon} trading days as JSON: action (buy/sell/hold), "
        "target_price, horizon_days, confidence, rationale.",
    ]
    return "\n".join(lines), f, seen


def trading_records(rows: Iterable[Row], ctx: Context) -> Iterator[Record]:
    opts = ctx.dataset.trading or TradingOptions()
    series = _read_prices(rows, ctx)
    if not series and not ctx.report.total_problems:
        raise BadDataError(f"{ctx.dataset.source}: no price rows (the file is empty or holds "
                           "only a header: date,ticker,open,high,low,close,volume)")  # fmt: skip
    try:  # with no valid price row, the news would only be "unknown ticker" noise
        news = _read_news(opts.news, series, ctx) if opts.news and series else {}
    except SourceError as exc:
        raise BadDataError(str(exc), problems=[str(exc)]) from None
    for ticker in sorted(series):
        s = series[ticker]
        closes = [p["close"] for p in s]
        for t in range(opts.window, len(s) - opts.horizon):
            if s[t - opts.window]["seg"] != s[t + opts.horizon]["seg"]:
                continue  # the window or the horizon spans a gap
            prompt, f, seen = example_prompt(ticker, s, t, opts, news.get(ticker, []))
            action, target, conf, fwd = label(
                closes, t, opts.horizon, opts.hold_band_pct, f.volatility_pct
            )
            why = (
                f"5-day return {f.return_5d_pct:+.1f}%, RSI14 {f.rsi14:.0f}, "
                f"close/SMA{opts.window} {f.sma_ratio:.3f}, volatility {f.volatility_pct:.2f}%/day"
            )
            if seen:
                why += "; news: " + "; ".join(f"'{n['headline']}'" for n in seen[-2:])
            answer = {"action": action, "target_price": target, "horizon_days": opts.horizon,
                      "confidence": conf, "rationale": why}  # fmt: skip
            yield {
                "prompt": prompt,
                "completion": json.dumps(answer, ensure_ascii=False),
                "messages": [{"role": "user", "content": prompt},
                             {"role": "assistant", "content": json.dumps(answer)}],
                "meta": {"source": s[t]["where"], "ticker": ticker,
                         "date": s[t]["date"], "target_date": s[t + opts.horizon]["date"],
                         "forward_return_pct": fwd, "realized_label": action},
            }  # fmt: skip


def chronological_split(
    records: list[Record], fraction: float, horizon: int
) -> tuple[list[Record], list[Record]]:
    """The latest `fraction` of dates validate; earlier examples whose label window reaches
    into the validation period are dropped (purged), so no label leaks across the cut."""
    if fraction <= 0 or not records:
        return records, []
    dates = sorted({r["meta"]["date"] for r in records})
    cut = dates[min(len(dates) - 1, int(len(dates) * (1 - fraction)))]
    val = [r for r in records if r["meta"]["date"] >= cut]
    train = [r for r in records if r["meta"]["target_date"] < cut]
    return train, val


def parse_recommendation(output: str) -> dict[str, Any] | None:
    """The first JSON object in a generated answer with a valid action, else None."""
    start = output.find("{")
    while start != -1:
        try:
            obj, _ = json.JSONDecoder().raw_decode(output, start)
        except json.JSONDecodeError:
            start = output.find("{", start + 1)
            continue
        if isinstance(obj, dict) and obj.get("action") in ("buy", "sell", "hold"):
            return obj
        start = output.find("{", start + 1)
    return None
