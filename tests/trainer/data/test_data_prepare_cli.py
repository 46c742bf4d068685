"""`kubetune prepare`: files written, counts and fingerprint printed, exit codes 64/65."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from data_support import job_dict, write_jsonl

from kubetune_trainer.cli import main

QA = [{"question": f"What is test {i}?", "answer": f"Result {i}. " * (1 + 20 * (i == 3))}
      for i in range(10)]  # fmt: skip


def run(tmp_path: Path, job: dict[str, Any], *args: str) -> Any:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return CliRunner().invoke(main, ["prepare", str(path), *args])


def test_prepare_writes_splits_and_counts(tmp_path: Path, tokenizer: Any) -> None:
    tokenizer.save_pretrained(tmp_path / "tok")
    job = job_dict(str(write_jsonl(tmp_path / "qa.jsonl", QA)), max_seq_length=48, template="plain")
    job["spec"]["model"]["base"] = str(tmp_path / "tok")
    res = run(tmp_path, job, "--out", str(tmp_path / "out"), "--set", "training.seed=3")
    assert res.exit_code == 0, res.output
    train = (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    val = (tmp_path / "out" / "validation.jsonl").read_text().splitlines()
    assert (len(train), len(val)) == (9, 1)
    assert "read: 10 rows; skipped (bad): 0" in res.output
    assert "kept: 10 examples (train 9, validation 1)" in res.output
    assert "truncated: 1 examples longer than maxSeqLength 48" in res.output
    assert json.loads(train[0])["meta"]["source"].startswith(f"{tmp_path / 'qa.jsonl'}:")
    fp = next(line for line in res.output.splitlines() if line.startswith("fingerprint:"))
    again = run(tmp_path, job, "--out", str(tmp_path / "out2"), "--set", "training.seed=3")
    assert fp in again.output


def test_prepare_without_offline_tokenizer_says_so(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    job = job_dict(str(write_jsonl(tmp_path / "qa.jsonl", QA)))
    job["spec"]["model"]["base"] = "no-such-org/no-such-model"
    res = run(tmp_path, job)
    assert res.exit_code == 0, res.output
    assert "truncated: not counted: no tokenizer could be loaded offline" in res.output
    assert (tmp_path / "runs" / "default" / "t" / "prepared" / "train.jsonl").is_file()


def test_bad_data_exits_65_with_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [*QA, {"question": "x"}, "{oops"])
    res = run(tmp_path, job_dict(str(path)))
    assert res.exit_code == 65
    assert f"{path}:11: missing field `answer`" in res.output
    assert f"{path}:12: invalid JSON" in res.output
    assert "Traceback" not in res.output


def test_invalid_spec_exits_64(tmp_path: Path) -> None:
    res = run(tmp_path, job_dict("x.jsonl", packing="sometimes"))
    assert res.exit_code == 64
    assert "packing" in res.output and "Traceback" not in res.output
