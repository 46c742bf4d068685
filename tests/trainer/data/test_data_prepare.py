"""prepare(): detection, field_map, kinds, splits, fingerprints and the finance layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_trainer.data import format_finance_answer, parse_finance_answer, prepare
from kubetune_trainer.errors import BadDataError, ConfigError
from tests.support.trainer.data import dataset_job, write_jsonl

QA = [{"question": f"Q{i}?", "answer": f"A{i}."} for i in range(20)]


@pytest.mark.parametrize(
    ("row", "fmt", "kind"),
    [
        ({"question": "q", "answer": "a"}, "qa", "sft"),
        ({"instruction": "i", "input": "x", "output": "o"}, "instruction", "sft"),
        ({"prompt": "p", "response": "r"}, "instruction", "sft"),
        ({"messages": [{"role": "user", "content": "u"},
                       {"role": "assistant", "content": "a"}]}, "chat", "sft"),
        ({"question": "q?", "answer": "Hold.", "rationale": "r", "tickers": ["MSFT"],
          "citations": ["10-K"], "context_required": False, "risk_note": "n"}, "finance_qa", "sft"),
        ({"prompt": "p", "output": "o", "rating": 5}, "rated", "sft"),
    ],
)  # fmt: skip
def test_auto_detects_format_by_keys(tmp_path: Path, row: dict, fmt: str, kind: str) -> None:
    data = prepare(dataset_job(write_jsonl(tmp_path / "d.jsonl", [row] * 3)))
    assert (data.format, data.kind) == (fmt, kind)


def test_unknown_and_ambiguous_formats_explain_keys(tmp_path: Path) -> None:
    with pytest.raises(BadDataError, match=r"unknown data format \(keys \['foo'\]\).*qa: "
                       r"\{question, answer\}"):  # fmt: skip
        prepare(dataset_job(write_jsonl(tmp_path / "u.jsonl", [{"foo": 1}])))
    both = {"messages": [], "question": "q", "answer": "a"}
    with pytest.raises(BadDataError, match="fit chat and qa"):
        prepare(dataset_job(write_jsonl(tmp_path / "a.jsonl", [both])))


def test_field_map_renames_before_validation(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"Q": "Why?", "A": "Because."}] * 3)
    data = prepare(dataset_job(path, field_map={"question": "Q", "answer": "A"}))
    assert data.format == "qa"
    assert (data.train + data.validation)[0]["completion"] == "Because."


def test_objective_decides_kind(tmp_path: Path) -> None:
    rated = [{"prompt": f"P{i % 3}", "output": f"O{i}", "rating": i % 5 + 1} for i in range(15)]
    path = write_jsonl(tmp_path / "r.jsonl", rated)
    sft = prepare(dataset_job(path, format="rated", rated={"minRating": 4}))
    assert all(r["meta"]["rating"] >= 4 for r in sft.train + sft.validation)
    assert len(sft.train + sft.validation) == 6 and sft.stats.filtered == 9
    dpo = prepare(dataset_job(path, format="rated", _objective="dpo", rated={"pairMargin": 3}))
    pairs = dpo.train + dpo.validation
    assert dpo.kind == "preference" and pairs
    assert all(p["meta"]["ratings"][0] - p["meta"]["ratings"][1] >= 3 for p in pairs)
    # The split keeps every prompt on one side.
    assert not {p["prompt"] for p in dpo.train} & {p["prompt"] for p in dpo.validation}
    with pytest.raises(BadDataError, match=r"detected format qa.*cannot train objective 'dpo'"):
        prepare(dataset_job(write_jsonl(tmp_path / "q.jsonl", QA), _objective="dpo"))
    with pytest.raises(ConfigError, match="sequence_classification needs"):
        prepare(dataset_job(write_jsonl(tmp_path / "q.jsonl", QA), format="qa",
                         _model={"task": "sequence_classification", "numLabels": 2}))  # fmt: skip


def test_classification_labels(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": ["onc", "cardio", "neuro"][i % 3]} for i in range(9)]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    model = {"task": "sequence_classification", "numLabels": 3}
    data = prepare(dataset_job(path, _model=model))
    assert data.label_names == ["cardio", "neuro", "onc"]
    assert all(data.label_names[r["label"]] == r["meta"]["label_name"] for r in data.train)
    with pytest.raises(BadDataError, match=r"set model\.numLabels: 3"):
        prepare(dataset_job(path, _model={**model, "numLabels": 2}))


def test_fingerprint_stable_and_sensitive(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", QA)
    a, b = prepare(dataset_job(path)), prepare(dataset_job(path))
    assert a.fingerprint == b.fingerprint and a.fingerprint.startswith("sha256:")
    assert a.train == b.train and a.validation == b.validation and a.validation
    write_jsonl(path, [*QA[:-1], {"question": "Q19?", "answer": "A19!"}])
    assert prepare(dataset_job(path)).fingerprint != a.fingerprint
    other_seed = prepare(dataset_job(path, _training={"seed": 7}))
    assert {r["prompt"] for r in other_seed.validation} != {r["prompt"] for r in a.validation}


def test_validation_source_and_max_examples(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "t.jsonl", QA)
    val = write_jsonl(tmp_path / "v.jsonl", QA[:3])
    data = prepare(dataset_job(train, validation={"source": str(val)}, max_examples=5))
    assert len(data.train) == 5 and data.stats.read == len(QA) + 3  # all rows are checked
    assert [r["prompt"] for r in data.validation] == ["Q0?", "Q1?", "Q2?"]
    assert data.validation[0]["meta"]["source"] == f"{val}:1"


def test_missing_source_is_bad_data(tmp_path: Path) -> None:
    with pytest.raises(BadDataError, match="no such file or folder"):
        prepare(dataset_job(tmp_path / "nope.jsonl"))


def test_finance_layout_round_trip() -> None:
    text = format_finance_answer(
        "Hold at <PRICE>.", "Up <CHANGE> since <TIMESTAMP>.", ["10-K 2023", "Q3 call"], "Volatile."
    )
    assert text == (
        "Answer: Hold at <PRICE>.\nRationale: Up <CHANGE> since <TIMESTAMP>.\n"
        "Citations: [1] 10-K 2023; [2] Q3 call\nRisk: Volatile."
    )
    parsed = parse_finance_answer(text)
    assert parsed["complete"] and parsed["citations"] == ["10-K 2023", "Q3 call"]
    assert parsed["placeholders"] == ["<PRICE>", "<CHANGE>", "<TIMESTAMP>"]
    assert parsed["raw_values"] == []
    partial = parse_finance_answer("Answer: Buy at $12.40 now\nRisk: none")
    assert not partial["complete"] and partial["sections"] == ["answer", "risk"]
    assert partial["citations"] == [] and partial["raw_values"] == [("$12.40", "<PRICE>")]
