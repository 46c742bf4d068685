"""Exact duplicate rows: counted and reported by default, removed with dataset.dedupe."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from kubetune_trainer.cli import main
from kubetune_trainer.data import prepare
from kubetune_trainer.data.duplicates import DEDUPE_RULE
from tests.support.trainer.data import dataset_job, job_dict, write_jsonl


def rows_with_duplicates(tmp_path: Path) -> Path:
    """Rows 3 and 5 repeat row 1 (row 5 with its keys in another order); 4 repeats 2."""
    a = {"question": "What is BRCA1?", "answer": "A tumour suppressor gene."}
    b = {"question": "What is TP53?", "answer": "Another one."}
    c = {"question": "What is rs429358?", "answer": "An APOE variant."}
    return write_jsonl(tmp_path / "d.jsonl", [a, b, a, b, json.dumps(a, sort_keys=True), c])


def test_duplicates_are_counted_and_reported(tmp_path: Path) -> None:
    path = rows_with_duplicates(tmp_path)
    data = prepare(dataset_job(path, validation={"fraction": 0}))
    s = data.stats
    assert (s.read, s.kept, s.duplicates, s.filtered, s.warned) == (6, 6, 3, 0, 3)
    note = "(dataset.dedupe: true removes duplicates)"
    assert s.warnings == [
        f"{path}:3: duplicate of {path}:1 {note}",
        f"{path}:4: duplicate of {path}:2 {note}",
        f"{path}:5: duplicate of {path}:1 {note}",
    ]


def test_dedupe_removes_them(tmp_path: Path) -> None:
    path = rows_with_duplicates(tmp_path)
    data = prepare(dataset_job(path, dedupe=True, validation={"fraction": 0}))
    s = data.stats
    assert (s.read, s.kept, s.duplicates, s.filtered, s.warned) == (6, 3, 3, 3, 0)
    assert s.filtered_by == {DEDUPE_RULE: 3}
    assert [r["meta"]["source"] for r in data.train] == [f"{path}:{n}" for n in (1, 2, 6)]


def test_duplicate_price_rows_are_dropped_before_the_order_check(tmp_path: Path) -> None:
    lines = ["date,ticker,open,high,low,close,volume"] + [
        f"2024-01-{d:02d},ACME,10,12,9,{10 + d / 10},1000" for d in range(2, 20)
    ]
    lines.insert(5, lines[4])  # the same day twice (an export appended twice, say)
    (tmp_path / "prices.csv").write_text("\n".join(lines) + "\n")
    job = dataset_job(tmp_path / "prices.csv", format="trading", dedupe=True,
                   trading={"window": 5, "horizon": 2})  # fmt: skip
    data = prepare(job)
    assert (data.stats.duplicates, data.stats.skipped, data.stats.filtered) == (1, 0, 1)


def test_prepare_prints_duplicates_and_filter_rules(tmp_path: Path) -> None:
    path = rows_with_duplicates(tmp_path)
    spec = tmp_path / "job.yaml"
    job = job_dict(str(path), dedupe=True)
    job["spec"]["model"]["base"] = str(tmp_path / "no-model")  # skips the truncation count
    spec.write_text(yaml.safe_dump(job))
    res = CliRunner().invoke(main, ["prepare", str(spec), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert f"  filtered 3 by {DEDUPE_RULE}" in res.output.splitlines()
    assert "duplicates: 3 exact duplicate row(s), removed" in res.output.splitlines()
