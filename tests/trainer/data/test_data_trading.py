"""trading: no look-ahead, realized labels, chronological split, bad rows with lines."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.data import prepare
from kubetune_trainer.data.formats.trading import MAX_SUMMARY, parse_recommendation
from tests.support.trainer.data import REPO, dataset_job, write_jsonl

SAMPLE = REPO / "examples" / "data" / "trading"
OPTS = {"news": "", "window": 10, "horizon": 5, "holdBandPct": 1.0}


def job(folder: Path, **kw: Any) -> Any:
    opts = {**OPTS, "news": str(folder / "news.jsonl"), **kw}
    return dataset_job(folder / "prices.csv", format="trading", trading=opts,
                    validation={"fraction": 0.2})  # fmt: skip


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    for name in ("prices.csv", "news.jsonl"):
        shutil.copy(SAMPLE / name, tmp_path / name)
    return tmp_path


def by_key(data: Any) -> dict[tuple[str, str], dict]:
    return {(r["meta"]["ticker"], r["meta"]["date"]): r for r in data.train + data.validation}


def test_changing_the_future_leaves_inputs_unchanged(sample: Path) -> None:
    before = by_key(prepare(job(sample, window=20)))
    cut = "2023-06-15"
    rows = list(csv.DictReader((sample / "prices.csv").open()))
    for r in rows:  # a consistent but different ACME future: prices doubled, volume x5
        if r["ticker"] == "ACME" and r["date"] > cut:
            for k in ("open", "high", "low", "close"):
                r[k] = f"{float(r[k]) * 2:.2f}"
            r["volume"] = str(int(float(r["volume"]) * 5))
    with (sample / "prices.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    news = (sample / "news.jsonl").read_text()
    late = [{"date": day, "ticker": "ACME", "headline": f"Acme leaks future {day}",
             "summary": "Shares will double.", "source": "Oracle"}
            for day in ("2023-06-16", "2023-07-03", "2023-09-01")]  # fmt: skip
    (sample / "news.jsonl").write_text(news + "".join(json.dumps(n) + "\n" for n in late))
    after = by_key(prepare(job(sample, window=20)))
    acme = sorted(k for k in before if k[0] == "ACME")
    assert len(acme) > 200
    changed_targets = 0
    for key in acme:
        if key[1] <= cut:
            assert after[key]["prompt"] == before[key]["prompt"], key
            changed_targets += after[key]["completion"] != before[key]["completion"]
        else:
            assert after[key]["prompt"] != before[key]["prompt"]
    assert changed_targets >= 5  # labels of the last days before the cut do see the future
    assert all(after[k] == before[k] for k in before if k[0] != "ACME")
    # The changed future is visible once it is the past: volume and the late news.
    first_after = after[min(k for k in acme if k[1] > cut)]["prompt"]
    assert "Acme leaks future 2023-06-16 (Oracle)\n  Shares will double." in first_after
    ratio = re.compile(r"volume/avg20 ([\d.]+)")
    day = min(k for k in acme if k[1] > cut)
    old_ratio = float(ratio.findall(before[day]["prompt"])[0])
    assert float(ratio.findall(first_after)[0]) > 2.5 * old_ratio  # 5x volume on that day


def test_labels_follow_realized_forward_return(sample: Path) -> None:
    data = prepare(job(sample))
    closes: dict[tuple[str, str], float] = {}
    for r in csv.DictReader((sample / "prices.csv").open()):
        closes[(r["ticker"], r["date"])] = float(r["close"])
    assert len(data.train) > 500 and data.validation
    for rec in data.train[::37]:
        m, ans = rec["meta"], parse_recommendation(rec["completion"])
        assert ans is not None and list(ans) == [
            "action", "target_price", "horizon_days", "confidence", "rationale"
        ]  # fmt: skip
        fwd = closes[(m["ticker"], m["target_date"])] / closes[(m["ticker"], m["date"])] - 1
        expect = "hold" if abs(fwd * 100) < 1.0 else ("buy" if fwd > 0 else "sell")
        assert ans["action"] == expect == m["realized_label"]
        assert ans["target_price"] == closes[(m["ticker"], m["target_date"])]
        assert 0 <= ans["confidence"] <= 1 and ans["horizon_days"] == 5
        assert "RSI14" in ans["rationale"]


def test_split_is_chronological_and_purged(sample: Path) -> None:
    data = prepare(job(sample))
    first_val = min(r["meta"]["date"] for r in data.validation)
    assert all(r["meta"]["target_date"] < first_val for r in data.train)
    assert parse_recommendation('noise {"x": 1} then {"action": "hold", "confidence": 0.6}') == {
        "action": "hold", "confidence": 0.6}  # fmt: skip


HEAD = "date,ticker,open,high,low,close,volume"
GOOD = [f"2024-01-{d:02d},ACME,10,11,9,10.5,1000" for d in range(2, 30)]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("2024-01-31,ACME,10,11,9,abc,1000", "field `close` must be a number, got 'abc'"),
        ("2024-01-31,ACME,10,9,11,10,1000", "high 9.0 is below low 11.0"),
        ("2024-01-10,ACME,10,11,9,10.5,1000", "date 2024-01-10 out of order for ACME"),
        ("2024-01-29,ACME,10,11,9,10.5,1000", "date 2024-01-29 out of order"),
        ("31/01/2024,ACME,10,11,9,10.5,1000", "field `date` '31/01/2024' is not a date"),
        ("2024-01-31,ACME,10,11,9,10.5,-5", "volume -5.0 is negative"),
        ("2024-01-31,ACME,10,11,9,12,1000", "open/close outside the day's range"),
        ("2024-01-31,ACME,0,11,0,10,1000", "prices must be positive"),
        ("2024-01-31,ACME,10,11,9", "expected 7 columns, got 5"),
        ("2024-01-31,,10,11,9,10.5,1000", "field `ticker` is empty"),
    ],
)
def test_bad_price_rows(tmp_path: Path, row: str, reason: str) -> None:
    (tmp_path / "prices.csv").write_text("\n".join([HEAD, *GOOD, row]) + "\n")
    write_jsonl(tmp_path / "news.jsonl", [])
    data = prepare(dataset_job(tmp_path / "prices.csv", format="trading", bad_rows="skip",
                            trading={"window": 5, "horizon": 2}))  # fmt: skip
    assert len(data.stats.problems) == 1
    assert data.stats.problems[0].startswith(f"{tmp_path / 'prices.csv'}:30: {reason}")


def test_news_summaries_appear_under_their_headlines(tmp_path: Path) -> None:
    (tmp_path / "prices.csv").write_text("\n".join([HEAD, *GOOD]) + "\n")
    long = "Revenue   rose on\nstrong demand for the new line. " * 20
    news = write_jsonl(tmp_path / "news.jsonl", [
        {"date": "2024-01-04", "ticker": "ACME", "headline": "Acme opens plant",
         "summary": "The plant adds 300 jobs.", "source": "Wire"},
        {"date": "2024-01-05", "ticker": "ACME", "headline": "Acme beats", "summary": long},
        {"date": "2024-01-08", "ticker": "ACME", "headline": "Acme quiet"},
    ])  # fmt: skip
    data = prepare(dataset_job(tmp_path / "prices.csv", format="trading",
                            trading={"window": 5, "horizon": 2, "news": str(news)}))  # fmt: skip
    rec = next(r for r in data.train if r["meta"]["date"] == "2024-01-08")
    lines = rec["prompt"].splitlines()
    i = lines.index("- 2024-01-04 Acme opens plant (Wire)")
    assert lines[i + 1] == "  The plant adds 300 jobs."
    j = lines.index("- 2024-01-05 Acme beats")
    shown = lines[j + 1]
    assert shown.startswith("  Revenue rose on strong demand for the new line. Revenue")
    assert shown.endswith("…") and len(shown) <= 2 + MAX_SUMMARY
    assert lines[j + 2] == "- 2024-01-08 Acme quiet"  # no summary: no extra line
    assert lines[j + 3].startswith("Recommend for the next 2 trading days")


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"date": "2024-01-05", "ticker": "ZZZZ", "headline": "x"}, "unknown ticker 'ZZZZ'"),
        (
            {"date": "2024-01-05", "ticker": "ACME", "headline": "x", "summary": 3},
            "field `summary` must be a string",
        ),
        ({"date": "2024-13-05", "ticker": "ACME", "headline": "x"}, "is not a date"),
        ({"date": "2024-01-05", "ticker": "ACME", "headline": ""}, "field `headline` is empty"),
        ({"date": "2024-01-05", "headline": "x"}, "missing field `ticker`"),
    ],
)
def test_bad_news_rows(tmp_path: Path, item: dict, reason: str) -> None:
    (tmp_path / "prices.csv").write_text("\n".join([HEAD, *GOOD]) + "\n")
    ok = {"date": "2024-01-04", "ticker": "acme", "headline": "Acme opens plant"}
    news = write_jsonl(tmp_path / "news.jsonl", [ok, item])
    data = prepare(dataset_job(tmp_path / "prices.csv", format="trading", bad_rows="skip",
                            trading={"window": 5, "horizon": 2, "news": str(news)}))  # fmt: skip
    assert data.stats.problems == [f"{news}:2: " + data.stats.problems[0].split(": ", 1)[1]]
    assert reason in data.stats.problems[0]
    assert any("Acme opens plant" in r["prompt"] for r in data.train + data.validation)


def test_field_map_and_auto_detection(tmp_path: Path) -> None:
    rows = [line.replace(",ACME,", ",acme,") for line in GOOD]
    (tmp_path / "p.csv").write_text("\n".join(["Day,Symbol,open,high,low,close,volume", *rows]))
    data = prepare(dataset_job(tmp_path / "p.csv", field_map={"date": "Day", "ticker": "Symbol"},
                            trading={"window": 5, "horizon": 2}))  # fmt: skip
    assert data.format == "trading" and data.stats.problems == []
    assert {r["meta"]["ticker"] for r in data.train} == {"ACME"}
