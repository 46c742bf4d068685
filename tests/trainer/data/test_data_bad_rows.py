"""Every bad row is reported as `file:line: reason`; policy fail stops, skip drops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.data import prepare
from kubetune_trainer.errors import BadDataError
from tests.support.trainer.data import dataset_job, write_jsonl

QA = {"question": "What lowers LDL?", "answer": "Statins and diet."}
INS = {"instruction": "Summarise.", "input": "Text.", "output": "Summary."}
CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
FIN = {
    "question": "Should I hold AAPL into earnings?", "answer": "Hold at <PRICE>.",
    "rationale": "Moved <CHANGE> since <TIMESTAMP>.", "tickers": ["AAPL"],
    "citations": ["Q3 10-Q"], "context_required": True, "risk_note": "Not advice.",
}  # fmt: skip
PREF = {"prompt": "2+2?", "chosen": "Answer: 4.", "rejected": "five maybe"}
RANK = {"prompt": "2+2?", "responses": ["Answer: 4.", "4", "five"]}
RATED = {"prompt": "2+2?", "output": "Answer: 4.", "rating": 5}
CLS = {"text": "BRCA1 loss in breast cancer", "label": "oncology"}


def bad(base: dict[str, Any], **change: Any) -> dict[str, Any]:
    row = {**base, **change}
    return {k: v for k, v in row.items() if v is not DROP}


DROP = object()
MSG = [{"role": "user", "content": "Hi"}]

# (format, objective, good row, bad row or raw line, expected reason fragment)
CASES: list[tuple[str, str, dict[str, Any], Any, str]] = [
    ("qa", "sft", QA, '{"question": "x", "answer": ', "invalid JSON"),
    ("qa", "sft", QA, "[1, 2]", "expected a JSON object, got list"),
    ("qa", "sft", QA, bad(QA, answer=""), "field `answer` is empty"),
    ("qa", "sft", QA, bad(QA, answer="   "), "field `answer` is empty"),
    ("qa", "sft", QA, bad(QA, question=DROP), "missing field `question`"),
    ("qa", "sft", QA, bad(QA, answer=42), "field `answer` must be a string, got int"),
    ("qa", "sft", QA, bad(QA, question=None), "missing field `question`"),
    ("instruction", "sft", INS, bad(INS, output=DROP), "missing field `output`"),
    ("instruction", "sft", INS, bad(INS, instruction=""), "field `instruction` is empty"),
    ("instruction", "sft", INS, bad(INS, input=["a"]), "field `input` must be a string"),
    ("chat", "sft", CHAT, {"messages": []}, "non-empty list"),
    ("chat", "sft", CHAT, {"messages": "hi"}, "non-empty list"),
    ("chat", "sft", CHAT, {"messages": [{"content": "Hi"}]}, "messages[0] has no `role`"),
    ("chat", "sft", CHAT, {"messages": [{"role": "bot", "content": "x"}]}, "is not one of"),
    ("chat", "sft", CHAT, {"messages": MSG}, "last message must be from the assistant"),
    ("chat", "sft", CHAT, {"messages": [*MSG, {"role": "assistant", "content": " "}]},
     "messages[1] (assistant) has empty or missing `content`"),
    ("chat", "sft", CHAT, {"messages": [*MSG, *MSG, {"role": "assistant", "content": "x"}]},
     "two user messages in a row"),
    ("chat", "sft", CHAT, {"messages": [{"role": "assistant", "content": "x"}]},
     "first non-system message must be from the user"),
    ("chat", "sft", CHAT, {"messages": [*MSG, {"role": "system", "content": "s"},
                                        {"role": "assistant", "content": "x"}]},
     "a system message must come first"),
    ("finance_qa", "sft", FIN, bad(FIN, answer="Hold at $182.50."), "raw value '$182.50'"),
    ("finance_qa", "sft", FIN, bad(FIN, rationale="Up +2.3% this week."), "<CHANGE> is required"),
    ("finance_qa", "sft", FIN, bad(FIN, answer="As of 2024-05-01 hold."),
     "raw value '2024-05-01' where <TIMESTAMP> is required"),
    ("finance_qa", "sft", FIN, bad(FIN, answer="Hold at 182.50."),
     "field `answer` has raw value '182.50' where <PRICE> is required"),
    ("finance_qa", "sft", FIN, bad(FIN, rationale="AAPL closed at 182.50 after the call."),
     "field `rationale` has raw value '182.50' where <PRICE> is required"),
    ("finance_qa", "sft", FIN, bad(FIN, rationale="Shares rose 2.3 percent this week."),
     "raw value '2.3 percent' where <CHANGE> is required"),
    ("finance_qa", "sft", FIN, bad(FIN, rationale="Spreads widened 25 bps on the news."),
     "raw value '25 bps' where <CHANGE> is required"),
    ("finance_qa", "sft", FIN, bad(FIN, answer="As of May 1, 2024, hold."),
     "raw value 'May 1, 2024' where <TIMESTAMP> is required"),
    ("finance_qa", "sft", FIN, bad(FIN, answer="Quote of 01/05/2024: hold at <PRICE>."),
     "raw value '01/05/2024' where <TIMESTAMP> is required"),
    ("finance_qa", "sft", FIN, bad(FIN, rationale="Checked at 2:30 pm, up <CHANGE>."),
     "raw value '2:30 pm' where <TIMESTAMP> is required"),
    ("finance_qa", "sft", FIN, bad(FIN, tickers=["apple"]), "'apple' is not a ticker"),
    ("finance_qa", "sft", FIN, bad(FIN, tickers=[]), "`tickers` needs at least 1"),
    ("finance_qa", "sft", FIN, bad(FIN, citations="10-K"), "`citations` must be a list"),
    ("finance_qa", "sft", FIN, bad(FIN, context_required="yes"), "must be true or false"),
    ("finance_qa", "sft", FIN, bad(FIN, citations=[42]), "`citations[0]` must be a non-empty"),
    ("finance_qa", "sft", FIN, bad(FIN, citations=[{"source": " "}]), "`source` must be a"),
    ("finance_qa", "sft", FIN, bad(FIN, citations=DROP), "missing field `citations`"),
    ("preference", "dpo", PREF, bad(PREF, rejected="Answer: 4."), "are identical"),
    ("preference", "dpo", PREF, bad(PREF, chosen=DROP), "missing field `chosen`"),
    ("ranked", "ranking", RANK, bad(RANK, responses=["only one"]), "at least 2"),
    ("ranked", "ranking", RANK, bad(RANK, responses=["a", "a"]), "duplicates"),
    ("rated", "dpo", RATED, bad(RATED, rating="great"), "`rating` must be a number"),
    ("rated", "dpo", RATED, bad(RATED, rating=True), "must be a number, got bool"),
    ("rated", "dpo", RATED, bad(RATED, rating="NaN"), "finite number"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("n", "fmt", "objective", "good", "row", "reason"),
    [(i, *case) for i, case in enumerate(CASES)],
)
def test_bad_row_reported_with_line_and_reason(
    tmp_path: Path, n: int, fmt: str, objective: str, good: dict, row: Any,
    reason: str,
) -> None:  # fmt: skip
    # A varying number of good rows and a blank line before the bad one, good rows after.
    before = [good] * (1 + n % 4)
    if fmt == "rated":  # something for the good row to pair with
        before = [good, {**good, "output": "no", "rating": 1}] * (1 + n % 2)
    path = write_jsonl(tmp_path / "d.jsonl", [*before, "   ", row, good, good])
    line = len(before) + 2
    data = prepare(dataset_job(path, format=fmt, bad_rows="skip", _objective=objective))
    assert len(data.stats.problems) == 1
    where, _, why = data.stats.problems[0].partition(": ")
    assert where == f"{path}:{line}"
    assert reason in why
    assert data.stats.skipped == 1 and data.stats.read == len(before) + 3


@pytest.mark.parametrize(
    "change",
    [
        {"tickers": ["BRK.B", "MMM"], "answer": "Hold BRK.B and 3M at <PRICE> each."},
        {"rationale": "Per the 2023 10-K and the Q3 2024 call, up <CHANGE> since <TIMESTAMP>."},
        {"answer": "Hold at <PRICE_1.5> until <TIMESTAMP 14:30>.", "citations": ["10-K 2023"]},
        {"answer": "Buy 1,250 shares in 3 tranches at <PRICE>."},
        {"answer": "Hold at 182.50.", "context": "AAPL last 182.50 at 2024-05-01 14:30."},
        {"answer": "It closed at 182.50 on May 1, 2024.", "context_required": False},
    ],
)
def test_finance_rows_that_need_no_placeholder_are_kept(tmp_path: Path, change: dict) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [FIN, {**FIN, **change}])
    data = prepare(dataset_job(path, format="finance_qa", validation={"fraction": 0}))
    assert data.stats.problems == [] and len(data.train) == 2


def test_classification_bad_label(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [CLS, CLS, {"text": "x", "label": [1]}, CLS])
    job = dataset_job(path, bad_rows="skip", _model={"task": "sequence_classification",
                                                  "numLabels": 2})  # fmt: skip
    data = prepare(job)
    assert data.format == "classification"
    assert data.stats.problems[0].startswith(f"{path}:3: field `label` must be a class name")


def test_policy_fail_lists_up_to_max_errors_and_counts_all(tmp_path: Path) -> None:
    rows = [QA] + [bad(QA, answer="")] * 7
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    with pytest.raises(BadDataError) as err:
        prepare(dataset_job(path, max_errors=3))
    msg = str(err.value)
    assert "7 invalid row(s)" in msg
    assert f"{path}:2: field `answer` is empty" in msg
    assert f"{path}:4: field `answer` is empty" in msg
    assert f"{path}:5:" not in msg
    assert "and 4 more" in msg
    assert len(err.value.problems) == 3


def test_policy_skip_drops_and_counts(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [QA] * 8 + ["not json"] * 2)
    data = prepare(dataset_job(path, bad_rows="skip"))
    assert (data.stats.read, data.stats.skipped, data.stats.kept) == (10, 2, 8)
    assert len(data.train) + len(data.validation) == 8
