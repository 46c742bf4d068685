"""Bad-row messages that used to mislead: every problem of a row at once, the file a bad
row is in, an empty prices file, chat content as a list of parts, JSON column wording."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.data import prepare
from kubetune_trainer.data.report import MAX_PER_ROW
from kubetune_trainer.errors import BadDataError
from tests.support.trainer.data import dataset_job, write_jsonl

FIN = {
    "question": "Should I hold AAPL?", "answer": "Hold at <PRICE>.",
    "rationale": "Moved <CHANGE> since <TIMESTAMP>.", "tickers": ["AAPL"],
    "citations": ["Q3 10-Q"], "context_required": True, "risk_note": "Not advice.",
}  # fmt: skip
HEADER = "date,ticker,open,high,low,close,volume"


def error_lines(job: Any) -> list[str]:
    with pytest.raises(BadDataError) as err:
        prepare(job)
    return str(err.value).splitlines()


def prices(folder: Path, days: int = 18) -> Path:
    rows = [f"2024-01-{d:02d},ACME,10,12,9,{10 + d / 10},1000" for d in range(2, 2 + days)]
    path = folder / "prices.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_every_problem_of_a_row_is_reported(tmp_path: Path) -> None:
    bad = {**FIN, "question": "", "tickers": ["aapl"], "context_required": "yes",
           "answer": "Hold at ¥27,000 after +2.3% on 2024-05-01."}  # fmt: skip
    del bad["risk_note"]  # optional: the default risk note, not a problem
    bad["citations"] = [{"timestamp": "2024-05-01"}]
    path = write_jsonl(tmp_path / "f.jsonl", [FIN, bad])
    lines = error_lines(dataset_job(path, format="finance_qa"))
    assert lines[1] == (
        f"{path}:2: field `question` is empty; field `tickers`: "
        "'aapl' is not a ticker symbol (e.g. AAPL, BRK.B); field `citations[0]`: `source` must "
        "be a non-empty string; field `context_required` must be true or false"
    )
    raw = {**FIN, "answer": "Sell at $1.50, $2.50, $3.50, $4.50, $5.50 and $6.50 then."}
    path = write_jsonl(tmp_path / "g.jsonl", [raw])
    reason = error_lines(dataset_job(path, format="finance_qa"))[1]
    assert reason.count("where <PRICE> is required") == MAX_PER_ROW
    assert reason.endswith("; and 1 more")


def test_empty_prices_file_is_reported_as_such(tmp_path: Path) -> None:
    (tmp_path / "prices.csv").write_text(HEADER + "\n")
    news = write_jsonl(tmp_path / "news.jsonl", [
        {"date": "2024-01-03", "ticker": "ACME", "headline": f"Headline {i}"} for i in range(30)
    ])  # fmt: skip
    job = dataset_job(tmp_path / "prices.csv", format="trading",
                   trading={"window": 5, "horizon": 2, "news": str(news)})  # fmt: skip
    with pytest.raises(BadDataError) as err:
        prepare(job)
    assert str(err.value) == (
        f"{tmp_path / 'prices.csv'}: no price rows (the file is empty or holds only a header: "
        "date,ticker,open,high,low,close,volume)"
    )


def test_bad_news_rows_are_headed_with_the_news_file(tmp_path: Path) -> None:
    news = write_jsonl(tmp_path / "news.jsonl", [
        {"date": "2024-01-03", "ticker": "ACME", "headline": "Fine"},
        {"date": "03/01/2024", "ticker": "ACME"},
    ])  # fmt: skip
    job = dataset_job(prices(tmp_path), format="trading",
                   trading={"window": 5, "horizon": 2, "news": str(news)})  # fmt: skip
    lines = error_lines(job)
    assert lines[0].startswith(f"{news}: 1 invalid row(s) (dataset.badRows is fail")
    assert lines[1] == (
        f"{news}:2: field `date` '03/01/2024' is not a date (YYYY-MM-DD) or a date and time "
        "(YYYY-MM-DDTHH:MM); missing field `headline`"
    )


def test_bad_rows_in_two_files_head_both(tmp_path: Path) -> None:
    price_file = prices(tmp_path)
    with price_file.open("a") as fh:
        fh.write("2024-02-01,ACME,10,12,9,,1000\n")
    news = write_jsonl(tmp_path / "news.jsonl", [{"date": "2024-01-03", "ticker": "ZZZ",
                                                  "headline": "Other"}])  # fmt: skip
    job = dataset_job(price_file, format="trading",
                   trading={"window": 5, "horizon": 2, "news": str(news)})  # fmt: skip
    lines = error_lines(job)
    assert lines[0].startswith(f"{price_file} (1), {news} (1): 2 invalid row(s)")
    assert lines[1:3] == [f"{price_file}:20: missing field `close`",
                          f"{news}:1: unknown ticker 'ZZZ' (not in the price file)"]  # fmt: skip


def test_chat_content_as_a_list_of_parts(tmp_path: Path) -> None:
    parts = [{"type": "text", "text": "What is BRCA1?"}, {"type": "text", "text": "Briefly."}]
    good = {"messages": [{"role": "user", "content": parts},
                         {"role": "assistant", "content": "A gene."}]}  # fmt: skip
    data = prepare(dataset_job(write_jsonl(tmp_path / "c.jsonl", [good]), format="chat",
                            validation={"fraction": 0}))  # fmt: skip
    assert data.train[0]["prompt"] == "What is BRCA1?\n\nBriefly."
    image = {"type": "image_url", "image_url": {"url": "x.png"}}
    bad = {"messages": [{"role": "user", "content": [parts[0], image]},
                        {"role": "assistant", "content": []}]}  # fmt: skip
    path = write_jsonl(tmp_path / "d.jsonl", [good, bad])
    assert error_lines(dataset_job(path, format="chat"))[1] == (
        f"{path}:2: messages[0] (user).content[1] is not a text part (type 'image_url'); only "
        "{type: text, text: ...} parts can be trained on; messages[1] (assistant).content has "
        "no text in its 0 part(s)"
    )


def test_json_errors_say_at_column_once(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [
        {"question": "q?", "answer": "a."}, '{"question": "unterminated', '{"question": }',
    ])  # fmt: skip
    lines = error_lines(dataset_job(path, format="qa"))
    assert lines[1:] == [
        f"{path}:2: invalid JSON (Unterminated string starting at column 14)",
        f"{path}:3: invalid JSON (Expecting value at column 14)",
    ]


def test_every_problem_of_a_paper_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [{"title": "", "authors": "Ada", "year": 3000}])
    lines = error_lines(dataset_job(path, format="papers"))
    assert lines[1] == (
        f"{path}:1: field `title` is empty; paper has neither `abstract` nor `full_text`; "
        "field `authors` must be a list of names; field `year` must be a year like 2021, "
        "got 3000"
    )
