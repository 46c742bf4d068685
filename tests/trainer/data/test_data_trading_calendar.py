"""trading calendar: gaps per ticker, ticker spellings, news with a time of day."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from kubetune_trainer.data import prepare
from kubetune_trainer.data.formats.trading_calendar import missing_business_days
from kubetune_trainer.errors import BadDataError
from tests.support.trainer.data import dataset_job, write_jsonl

HEAD = "date,ticker,open,high,low,close,volume"


def business_days(start: str, n: int, skip: tuple[int, int] | None = None) -> list[str]:
    """n weekdays from start; `skip` = (index, count) leaves count weekdays out there."""
    out, day = [], date.fromisoformat(start)
    while len(out) < n + (skip[1] if skip else 0):
        if day.weekday() < 5:
            out.append(day.isoformat())
        day += timedelta(days=1)
    if skip:
        del out[skip[0] : skip[0] + skip[1]]
    return out


def price_lines(days: list[str], ticker: str = "ACME") -> list[str]:
    return [f"{d},{ticker},10,12,9,{10 + i % 7 / 10},1000" for i, d in enumerate(days)]


def write_prices(folder: Path, *lines: str) -> Path:
    path = folder / "prices.csv"
    path.write_text("\n".join([HEAD, *lines]) + "\n")
    return path


def test_missing_business_days_counts_weekdays_only() -> None:
    assert missing_business_days("2024-01-05", "2024-01-08") == 0  # Fri -> Mon
    assert missing_business_days("2024-01-02", "2024-01-04") == 1
    assert missing_business_days("2024-01-05", "2024-02-06") == 21


def test_a_gap_is_an_error_with_its_row(tmp_path: Path) -> None:
    days = business_days("2024-01-02", 30, skip=(10, 22))  # a month missing after row 10
    path = write_prices(tmp_path, *price_lines(days))
    job = dataset_job(path, format="trading", trading={"window": 5, "horizon": 2})
    with pytest.raises(BadDataError) as err:
        prepare(job)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{path}: 1 invalid row(s)")
    assert lines[1] == (
        f"{path}:12: 22 business days missing for ACME between {days[9]} and {days[10]} "
        "(trading.maxGapDays 5); fill the gap, or set trading.onGap: warn to use the series "
        "as it is"
    )


def test_under_skip_no_example_spans_a_gap(tmp_path: Path) -> None:
    days = business_days("2024-01-02", 30, skip=(10, 22))
    path = write_prices(tmp_path, *price_lines(days))
    data = prepare(dataset_job(path, format="trading", badRows="skip", validation={"fraction": 0},
                            trading={"window": 5, "horizon": 2}))  # fmt: skip
    s = data.stats
    assert (s.read, s.skipped, len(s.problems)) == (30, 0, 1)  # reported, row kept
    made = sorted(r["meta"]["date"] for r in data.train + data.validation)
    # segment 1: rows 0-9 -> t in 5..7; segment 2: rows 10-29 -> t in 15..27
    assert made == sorted(days[5:8] + days[15:28])


def test_gap_as_a_warning_or_within_the_limit(tmp_path: Path) -> None:
    days = business_days("2024-01-02", 30, skip=(10, 22))
    path = write_prices(tmp_path, *price_lines(days))
    data = prepare(dataset_job(path, format="trading", validation={"fraction": 0},
                            trading={"window": 5, "horizon": 2, "onGap": "warn"}))  # fmt: skip
    assert data.stats.warnings == [
        f"{path}:12: 22 business days missing for ACME between {days[9]} and {days[10]} "
        "(trading.maxGapDays 5)"
    ]
    assert len(data.train) + len(data.validation) == 30 - 5 - 2
    ok = prepare(dataset_job(path, format="trading",
                          trading={"window": 5, "horizon": 2, "maxGapDays": 22}))  # fmt: skip
    assert ok.stats.warned == 0 and ok.stats.problems == []


def test_ticker_spellings_are_one_series(tmp_path: Path) -> None:
    days = business_days("2024-01-02", 20)
    lines = price_lines(days)
    lines[3] = lines[3].replace(",ACME,", ", acme ,")
    lines[4] = lines[4].replace(",ACME,", ",Acme,")
    path = write_prices(tmp_path, *lines)
    news = write_jsonl(tmp_path / "news.jsonl", [
        {"date": days[8], "ticker": " acme", "headline": "Acme news"}])  # fmt: skip
    data = prepare(dataset_job(path, format="trading", validation={"fraction": 0},
                            trading={"window": 5, "horizon": 2, "news": str(news)}))  # fmt: skip
    assert {r["meta"]["ticker"] for r in data.train + data.validation} == {"ACME"}
    assert len(data.train) + len(data.validation) == 20 - 5 - 2
    rec = next(r for r in data.train if r["meta"]["date"] == days[8])
    assert f"- {days[8]} Acme news" in rec["prompt"].splitlines()


def test_news_after_the_close_counts_from_the_next_trading_day(tmp_path: Path) -> None:
    days = business_days("2024-01-02", 20)  # days[9] is a Monday... any day works
    path = write_prices(tmp_path, *price_lines(days))
    news = write_jsonl(tmp_path / "news.jsonl", [
        {"date": f"{days[9]}T09:30", "ticker": "ACME", "headline": "Morning news"},
        {"date": f"{days[9]} 16:00:00", "ticker": "ACME", "headline": "At the close"},
        {"date": f"{days[9]}T17:45", "ticker": "ACME", "headline": "Evening news"},
    ])  # fmt: skip
    job = dataset_job(path, format="trading", validation={"fraction": 0},
                   trading={"window": 5, "horizon": 2, "news": str(news)})  # fmt: skip
    by_day = {r["meta"]["date"]: r["prompt"] for r in prepare(job).train}
    assert f"- {days[9]} 09:30 Morning news" in by_day[days[9]]
    assert "At the close" not in by_day[days[9]] and "Evening" not in by_day[days[9]]
    nxt = by_day[days[10]].splitlines()
    assert nxt[nxt.index(f"- {days[9]} 09:30 Morning news") + 1 :][:2] == [
        f"- {days[9]} 16:00 At the close", f"- {days[9]} 17:45 Evening news"]  # fmt: skip
    late = dataset_job(path, format="trading", validation={"fraction": 0},
                    trading={"window": 5, "horizon": 2, "news": str(news),
                             "marketClose": "18:00"})  # fmt: skip
    assert "Evening news" in {r["meta"]["date"]: r["prompt"] for r in prepare(late).train}[
        days[9]]  # fmt: skip


def test_news_timestamps_with_an_offset_are_refused(tmp_path: Path) -> None:
    path = write_prices(tmp_path, *price_lines(business_days("2024-01-02", 20)))
    news = write_jsonl(tmp_path / "news.jsonl", [
        {"date": "2024-01-10T17:45+01:00", "ticker": "ACME", "headline": "x"}])  # fmt: skip
    job = dataset_job(
        path, format="trading", trading={"window": 5, "horizon": 2, "news": str(news)}
    )
    with pytest.raises(BadDataError) as err:
        prepare(job)
    assert str(err.value).splitlines()[1] == (
        f"{news}:1: field `date` '2024-01-10T17:45+01:00' is not a date (YYYY-MM-DD) or a date "
        "and time (YYYY-MM-DDTHH:MM) (give the market's local time without a UTC offset)"
    )
