"""dataset.maxExamples draws a seeded sample across the whole file, stratified by ticker
(trading) or by group (papers), never the first N rows."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

from kubetune_trainer.data import prepare
from tests.support.trainer.data import dataset_job, write_jsonl


def qa(n: int) -> list[dict[str, str]]:
    return [{"question": f"Q{i}?", "answer": f"A{i}."} for i in range(n)]


def test_sample_spans_the_file_and_follows_the_seed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", qa(200))
    one = prepare(dataset_job(path, maxExamples=20, validation={"fraction": 0}))
    ids = [int(r["prompt"][1:-1]) for r in one.train]
    assert len(ids) == 20 and ids == sorted(ids)  # file order kept
    assert ids != list(range(20)) and max(ids) >= 150  # drawn across the file
    again = prepare(dataset_job(path, maxExamples=20, validation={"fraction": 0}))
    assert again.train == one.train and again.fingerprint == one.fingerprint
    other = prepare(dataset_job(path, maxExamples=20, validation={"fraction": 0},
                             _training={"seed": 7}))  # fmt: skip
    assert other.train != one.train


def test_trading_sample_is_stratified_by_ticker(tmp_path: Path) -> None:
    lines, day = ["date,ticker,open,high,low,close,volume"], date(2023, 1, 2)
    days = []
    while len(days) < 120:
        if day.weekday() < 5:
            days.append(day.isoformat())
        day += timedelta(days=1)
    for i, d in enumerate(days):
        for k, t in enumerate(("AAA", "BBB", "CCC", "DDD")):
            lines.append(f"{d},{t},10,12,9,{10 + (i * (k + 1)) % 9 / 10},1000")
    (tmp_path / "prices.csv").write_text("\n".join(lines) + "\n")
    job = dataset_job(tmp_path / "prices.csv", format="trading", maxExamples=40,
                   validation={"fraction": 0.2}, trading={"window": 5, "horizon": 2})  # fmt: skip
    data = prepare(job)
    picked = data.train + data.validation
    by_ticker: dict[str, list[str]] = {}
    for r in picked:
        by_ticker.setdefault(r["meta"]["ticker"], []).append(r["meta"]["date"])
    assert len(data.validation) >= 4
    assert sorted(by_ticker) == ["AAA", "BBB", "CCC", "DDD"]
    for dates in by_ticker.values():  # each ticker drawn from its whole history
        assert min(dates) < days[40] and max(dates) > days[80]
    assert {r["meta"]["ticker"] for r in data.validation} == {"AAA", "BBB", "CCC", "DDD"}


def test_papers_sample_is_stratified_by_paper(tmp_path: Path) -> None:
    papers = [{"title": f"Paper {p}", "abstract": " ".join(f"w{p}x{i}" for i in range(600))}
              for p in range(5)]  # fmt: skip
    path = tmp_path / "papers.json"
    path.write_text(json.dumps(papers))
    data = prepare(dataset_job(path, format="papers", maxSeqLength=64, maxExamples=10,
                            validation={"fraction": 0.2}))  # fmt: skip
    picked = data.train + data.validation
    titles = [r["text"].splitlines()[0] for r in picked]
    assert len(picked) == 10
    assert {t: titles.count(t) for t in titles} == {f"Title: Paper {p}": 2 for p in range(5)}
    assert data.validation  # more than one paper, so one can validate
    chunks = sorted(r["meta"]["chunk"] for r in picked)
    assert chunks != [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]  # not each paper's first chunks
