"""docs/data-formats.md quotes what the code defines, verbatim: each layout below is made by
the code here and must appear in the doc as it is (so the doc cannot drift from it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest

from kubetune_api.spec_data import DatasetSpec, RatedOptions, ValidationSplit
from kubetune_trainer.data import format_finance_answer, prepare
from kubetune_trainer.data.collate import POSITION_ID_PACKING, plan_packing
from kubetune_trainer.data.formats import FORMAT_KEYS
from kubetune_trainer.data.formats.finance import PLACEHOLDERS, finance_prompt
from kubetune_trainer.data.formats.trading import MAX_SUMMARY
from kubetune_trainer.data.prepare import DETECT_ROWS
from kubetune_trainer.data.report import Report
from kubetune_trainer.data.templates import PREAMBLE, render
from kubetune_trainer.errors import BadDataError
from tests.support.trainer.data import REPO, dataset_job, write_jsonl

DOC = (REPO / "docs" / "data-formats.md").read_text(encoding="utf-8")


def block(text: str) -> str:
    """`text` as a fenced code block of the doc."""
    return f"```\n{text}\n```"


def turns(*contents: str) -> list[dict[str, str]]:
    roles = ["user", "assistant"] * len(contents)
    if contents[0] == "{system prompt}":
        roles = ["system", *roles]
    return [{"role": r, "content": c} for r, c in zip(roles, contents, strict=False)]


def test_prompt_templates() -> None:
    prompt, completion = render(turns("{instruction}", "{response}"), None, "auto")
    assert prompt.startswith(PREAMBLE)  # no chat template: alpaca
    assert block(prompt + completion) in DOC
    chat = turns("{system prompt}", "{user turn 1}", "{assistant turn 1}", "{user turn 2}",
                 "{assistant turn 2}")  # fmt: skip
    prompt, completion = render(chat, None, "alpaca")
    assert block(prompt + completion) in DOC
    templates = get_args(DatasetSpec.model_fields["template"].annotation)
    assert f"template: {templates[0]}" in DOC
    for name in templates:
        assert f"- `{name}`" in DOC


def test_finance_layouts_and_placeholders() -> None:
    target = format_finance_answer(
        "<answer>", "<rationale>", ["<first citation>", "<second citation>"], "<risk note>"
    )
    assert block(target) in DOC
    assert block(finance_prompt("<question>", ["AAPL", "MSFT"], "<context>")) in DOC
    for placeholder in PLACEHOLDERS:
        assert f"- `{placeholder}`: " in DOC


def test_format_keys_table_and_defaults() -> None:
    for name, alts in FORMAT_KEYS.items():
        keys = " or ".join("`{" + ", ".join(alt) + "}`" for alt in alts)
        assert f"| `{name}` | {keys} |" in DOC
    assert f"the first {DETECT_ROWS} rows decide" in DOC
    assert f"`rated.minRating` (default {RatedOptions().min_rating})" in DOC
    assert f"`rated.pairMargin` (default {RatedOptions().pair_margin})" in DOC
    assert f"`validation.fraction` (default {ValidationSplit().fraction})" in DOC
    max_errors = DatasetSpec.model_fields["max_errors"].default
    assert f"up to `maxErrors`\n  (default {max_errors})" in DOC
    assert f"at\nmost {MAX_SUMMARY} characters" in DOC


def test_bad_row_message() -> None:
    report = Report("fail", 2)
    report.problem("data.jsonl:3", "missing field `answer`")
    report.problem("data.jsonl:7", "invalid JSON (Expecting value at column 1)")
    report.problem("data.jsonl:9", "field `answer` is empty")
    with pytest.raises(BadDataError) as err:
        report.check("data.jsonl")
    assert block(str(err.value)) in DOC


def test_packing_architectures_and_fallback_note() -> None:
    *rest, last = (f"`{t}`" for t in sorted(POSITION_ID_PACKING))
    assert f"model types {', '.join(rest)} and {last}" in DOC.replace("\n", " ")
    note = plan_packing("auto", "causal_lm", "sft", "bert").note
    head, _, tail = note.partition(" (known: ")
    doc = DOC.replace("\n  ", " ").replace("\n", " ")
    assert f"`{head} (...){tail.split(')', 1)[1]}`" in doc


def test_papers_chunk_and_trading_answer_layouts(tmp_path: Path) -> None:
    papers = tmp_path / "p.json"
    papers.write_text(json.dumps([{"title": "<title>", "abstract": "<text>"}]))
    chunk = prepare(dataset_job(papers, format="papers", validation={"fraction": 0})).train[0]
    assert block(chunk["text"]) in DOC
    prices = ["date,ticker,open,high,low,close,volume"] + [
        f"2024-01-{d:02d},ACME,10,12,9,{10 + d / 10},1000" for d in range(2, 20)
    ]
    (tmp_path / "prices.csv").write_text("\n".join(prices) + "\n")
    write_jsonl(tmp_path / "news.jsonl", [])
    rec = prepare(dataset_job(tmp_path / "prices.csv", format="trading",
                           trading={"window": 5, "horizon": 2})).train[0]  # fmt: skip
    keys = list(json.loads(rec["completion"]))
    assert "keys in this order: " + ", ".join(f"`{k}`" for k in keys) + "." in DOC.replace(
        "\n", " ")  # fmt: skip


def test_reading_rules_and_their_limits(tmp_path: Path, monkeypatch: Any) -> None:
    """Encoding, limits, dedupe, per-row problems, gaps and validation size, as coded."""
    from kubetune_api.spec_data import TradingOptions
    from kubetune_trainer.data.decoding import MAX_CSV_CELL, MAX_DEPTH
    from kubetune_trainer.data.duplicates import DEDUPE_RULE
    from kubetune_trainer.data.report import MAX_PER_ROW

    doc = DOC.replace("\n", " ")
    assert f"nest at most {MAX_DEPTH} levels" in doc
    assert f"`JSON nested deeper than {MAX_DEPTH} levels`" in doc
    assert f"at most {MAX_CSV_CELL} characters ({MAX_CSV_CELL // 2**20} MiB;" in doc
    assert f"`{DEDUPE_RULE}`" in doc and f"(up to {MAX_PER_ROW} per row," in doc
    t = TradingOptions()
    assert f"`trading.maxGapDays` (default {t.max_gap_days})" in doc
    assert f"`trading.marketClose` (default `{t.market_close}`)" in doc
    assert f"`trading.onGap: {t.on_gap}` (default)" in doc
    assert f"`validation.minExamples` (default {ValidationSplit().min_examples})" in doc
    assert f"encoding: {DatasetSpec.model_fields['encoding'].default} " in DOC
    monkeypatch.chdir(tmp_path)  # file names as the doc shows them
    lines = [b"question,answer", b"Q0?,A0.", "Q1 SOCI\u00c9T\u00c9?,A1.".encode("latin-1")]
    Path("data.csv").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(BadDataError) as err:
        prepare(dataset_job("data.csv", format="qa"))
    assert block(str(err.value)) in DOC
    from datetime import date, timedelta

    days, day = [], date(2024, 1, 2)
    while len(days) < 52:
        days += [day.isoformat()] if day.weekday() < 5 else []
        day += timedelta(days=1)
    days = days[:10] + days[32:]  # 22 business days missing after the 10th row
    rows = [f"{d},ACME,10,12,9,11,1000" for d in days]
    Path("prices.csv").write_text("\n".join(["date,ticker,open,high,low,close,volume", *rows]))
    with pytest.raises(BadDataError) as err:
        prepare(dataset_job("prices.csv", format="trading", trading={"window": 5, "horizon": 2}))
    assert f"  ```\n  {str(err.value).splitlines()[1]}\n  ```" in DOC
