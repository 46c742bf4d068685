"""Generate prices.csv and news.jsonl: four fictional tickers, 300 trading days (deterministic).

    python examples/data/trading/generate.py

Prices follow a geometric random walk with per-ticker drift and volatility and a few
regime changes; intraday open/high/low are drawn around the close. News items are written
on days with large moves (after the fact, as real news is) plus routine items.
"""

from __future__ import annotations

import csv
import json
import math
import random
from datetime import date, timedelta
from pathlib import Path

DAYS = 300
# ticker: (start price, daily drift, daily volatility, name)
TICKERS = {
    "ACME": (52.0, 0.0006, 0.014, "Acme Industrial"),
    "BOLT": (118.0, 0.0002, 0.022, "Bolt Motors"),
    "CRNX": (23.5, -0.0003, 0.028, "Coronix Biotech"),
    "DYNA": (310.0, 0.0004, 0.011, "Dyna Software"),
}
UP = [
    "{name} shares jump after earnings beat",
    "{name} raises full-year guidance",
    "Analysts upgrade {name} on strong demand",
    "{name} wins large government contract",
]
DOWN = [
    "{name} falls after guidance cut",
    "{name} misses revenue estimates",
    "Regulator opens probe into {name}",
    "{name} recalls products over defect",
]
ROUTINE = [
    "{name} schedules quarterly results call",
    "{name} names new finance chief",
    "{name} announces share buyback review",
    "{name} opens new regional office",
]
SOURCES = ["Newswire", "MarketDesk", "Daily Ledger"]  # fmt: skip


def trading_days(start: date, n: int) -> list[date]:
    days, d = [], start
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


def main() -> None:
    rng = random.Random(2024)
    days = trading_days(date(2023, 1, 2), DAYS)
    prices, news = [], []
    for ticker, (price, drift, vol, name) in TICKERS.items():
        regime = 0.0
        for i, d in enumerate(days):
            if i % 60 == 0:  # a new regime every ~3 months
                regime = rng.choice([-0.002, 0.0, 0.0015, 0.003])
            ret = drift + regime + vol * rng.gauss(0, 1)
            shock = rng.random() < 0.03
            if shock:
                ret += rng.choice([-1, 1]) * rng.uniform(0.04, 0.08)
            prev, price = price, price * math.exp(ret)
            open_ = prev * math.exp(vol * 0.3 * rng.gauss(0, 1))
            high = max(open_, price) * (1 + abs(rng.gauss(0, vol * 0.5)))
            low = min(open_, price) * (1 - abs(rng.gauss(0, vol * 0.5)))
            volume = int(1_000_000 * (1 + 4 * abs(ret) / vol * 0.2) * rng.uniform(0.7, 1.3))
            prices.append([d.isoformat(), ticker, f"{open_:.2f}", f"{high:.2f}",
                           f"{low:.2f}", f"{price:.2f}", volume])  # fmt: skip
            if shock or abs(ret) > 2.5 * vol:
                pool = UP if ret > 0 else DOWN
            elif rng.random() < 0.02:
                pool = ROUTINE
            else:
                continue
            headline = rng.choice(pool).format(name=name)
            news.append({"date": d.isoformat(), "ticker": ticker, "headline": headline,
                         "summary": f"{headline}; shares closed at {price:.2f}.",
                         "source": rng.choice(SOURCES)})  # fmt: skip
    prices.sort(key=lambda r: (r[0], r[1]))  # one file, rows by date then ticker
    news.sort(key=lambda n: (n["date"], n["ticker"]))
    here = Path(__file__).parent
    with (here / "prices.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["date", "ticker", "open", "high", "low", "close", "volume"])
        w.writerows(prices)
    with (here / "news.jsonl").open("w") as fh:
        fh.writelines(json.dumps(n) + "\n" for n in news)
    print(f"wrote {len(prices)} price rows and {len(news)} news items to {here}")


if __name__ == "__main__":
    main()
