"""finance_qa rows as the requirement writes them: citations as `{source, timestamp}`
objects or strings (one rendering), risk_note optional (DEFAULT_RISK_NOTE), and
`kubetune data placeholders` turning raw values into placeholders with a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from kubetune_trainer.cli import main
from kubetune_trainer.data import prepare
from kubetune_trainer.data.formats.finance import (
    DEFAULT_RISK_NOTE,
    parse_finance_answer,
    placeholder_violations,
)
from tests.support.trainer.data import REPO, dataset_job, write_jsonl

# The finance requirement's example row: citation objects, no risk_note, placeholders.
REQUIREMENT_ROW = {
    "question": "What is the current price of AAPL and how has it moved today?",
    "answer": "AAPL is trading at <PRICE>, a change of <CHANGE> since the open as of <TIMESTAMP>.",
    "rationale": "Live quotes are not in the prompt, so the values are placeholders.",
    "tickers": ["AAPL"],
    "citations": [{"source": "Exchange market data feed", "timestamp": "<TIMESTAMP>"}],
    "context_required": True,
}
# The same kind of row written with raw values: what `data placeholders` is for.
RAW_ROW = {
    "question": "How did MSFT close today?",
    "answer": "MSFT closed at $412.35, up 1.2% on 2024-05-01.",
    "rationale": "From the closing print at 4:00 pm.",
    "tickers": ["MSFT"],
    "citations": [{"source": "Nasdaq closing prices", "timestamp": "2024-05-01T16:00:00Z"}],
    "context_required": True,
    "risk_note": "Not investment advice.",
}
CONTEXT_ROW = {**RAW_ROW, "context": "MSFT closed at $412.35 on 2024-05-01, +1.2%."}
STRING_ROW = {**RAW_ROW, "answer": "MSFT is in the software sector.", "rationale": "Profile.",
              "citations": ["MSFT 10-K 2023"], "context_required": False}  # fmt: skip


def completions(path: Path) -> list[str]:
    data = prepare(dataset_job(path, format="auto", validation={"fraction": 0}))
    return [r["completion"] for r in data.train]


def test_requirement_row_is_accepted_with_default_risk_note(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [REQUIREMENT_ROW])
    data = prepare(dataset_job(path, format="auto", validation={"fraction": 0}))
    assert data.format == "finance_qa"  # detected without a risk_note key
    (rec,) = data.train
    assert rec["completion"] == (
        f"Answer: {REQUIREMENT_ROW['answer']}\nRationale: {REQUIREMENT_ROW['rationale']}\n"
        f"Citations: [1] Exchange market data feed (<TIMESTAMP>)\nRisk: {DEFAULT_RISK_NOTE}"
    )
    assert rec["meta"]["risk_note_default"] is True
    parsed = parse_finance_answer(rec["completion"])
    assert parsed["complete"] and parsed["citations"] == ["Exchange market data feed (<TIMESTAMP>)"]


def test_citation_objects_and_strings_share_one_layout(tmp_path: Path) -> None:
    mixed = {**STRING_ROW, "citations": [
        "MSFT 10-K 2023", {"source": "Reuters", "timestamp": "2024-05-01T14:30Z"},
        {"source": "Company profile"}]}  # fmt: skip
    path = write_jsonl(tmp_path / "f.jsonl", [mixed])
    (target,) = completions(path)
    line = "Citations: [1] MSFT 10-K 2023; [2] Reuters (2024-05-01T14:30Z); [3] Company profile"
    assert line in target.splitlines()
    assert parse_finance_answer(target)["citations"] == [
        "MSFT 10-K 2023", "Reuters (2024-05-01T14:30Z)", "Company profile"]  # fmt: skip


def run_placeholders(src: Path, dst: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["data", "placeholders", str(src), str(dst), *args])


def test_placeholders_rewrites_raw_values_and_reports_each(tmp_path: Path) -> None:
    rows = [RAW_ROW, CONTEXT_ROW, STRING_ROW, REQUIREMENT_ROW]
    src = write_jsonl(tmp_path / "raw.jsonl", rows)
    # As written, the raw row is a bad row: the tool is what makes it usable.
    assert placeholder_violations(RAW_ROW["answer"])
    res = run_placeholders(src, tmp_path / "out" / "clean.jsonl")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[:4] == [
        "row 1 answer: '$412.35' -> <PRICE>",
        "row 1 answer: '1.2%' -> <CHANGE>",
        "row 1 answer: '2024-05-01' -> <TIMESTAMP>",
        "row 1 rationale: '4:00 pm' -> <TIMESTAMP>",
    ]
    assert res.output.splitlines()[4].endswith(
        "4 row(s): 1 rewritten (1 <CHANGE>, 1 <PRICE>, 2 <TIMESTAMP>); "
        "1 kept (context given), 1 kept (context_required not true)"
    )
    out = [json.loads(x) for x in (tmp_path / "out" / "clean.jsonl").read_text().splitlines()]
    assert out[0]["answer"] == "MSFT closed at <PRICE>, up <CHANGE> on <TIMESTAMP>."
    assert out[0]["rationale"] == "From the closing print at <TIMESTAMP>."
    assert out[0]["citations"] == RAW_ROW["citations"]  # sources keep their dates
    assert out[1:] == rows[1:]  # context given / not required / already clean: unchanged
    assert len(completions(tmp_path / "out" / "clean.jsonl")) == 4  # all pass


def test_placeholders_json_report(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "raw.jsonl", [RAW_ROW])
    res = run_placeholders(src, tmp_path / "clean.jsonl", "-o", "json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert (report["rows"], report["rows_changed"]) == (1, 1)
    assert report["changes"][0] == {
        "row": 1, "field": "answer", "raw": "$412.35", "placeholder": "<PRICE>"}  # fmt: skip


def test_placeholders_bad_input_writes_nothing(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "raw.jsonl", [RAW_ROW, "{not json"])
    res = run_placeholders(src, tmp_path / "clean.jsonl")
    assert res.exit_code == 65
    assert f"{src}:2: not valid JSON" in res.output
    assert not (tmp_path / "clean.jsonl").exists()
    res = run_placeholders(src, src)
    assert res.exit_code == 64 and "OUT must differ from IN" in res.output
    assert src.read_text().startswith(json.dumps(RAW_ROW))  # the input is untouched


def test_docs_show_the_requirement_row() -> None:
    doc = (REPO / "docs" / "data-formats.md").read_text(encoding="utf-8")
    assert json.dumps(REQUIREMENT_ROW) in doc
    assert DEFAULT_RISK_NOTE in doc
    assert "kubetune data placeholders" in doc
