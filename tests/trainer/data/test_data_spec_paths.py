"""Relative paths in a spec file are found next to the spec (then in the working
directory, as before); `--set` values are relative to the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubetune_trainer.cli import main
from tests.support.trainer.data import job_dict, write_jsonl

QA = [{"question": f"Q{i}?", "answer": f"A{i}."} for i in range(6)]


def spec_in(folder: Path, source: str) -> Path:
    job = job_dict(source, validation={"fraction": 0})
    job["spec"]["model"]["base"] = "no-model-here"  # skips the truncation count
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.yaml").write_text(yaml.safe_dump(job))
    return folder / "job.yaml"


def prepare(spec: Path, out: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["prepare", str(spec), "--out", str(out), *args])
    return res.exit_code, res.output


def test_a_spec_finds_its_data_beside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_in(tmp_path / "jobs", "data/qa.jsonl")
    write_jsonl(tmp_path / "jobs" / "data" / "qa.jsonl", QA)
    monkeypatch.chdir(tmp_path)  # elsewhere: tmp_path/data/qa.jsonl does not exist
    code, out = prepare(spec, tmp_path / "out")
    assert code == 0, out
    assert "kept: 6 examples (train 6, validation 0)" in out


def test_the_working_directory_still_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = spec_in(tmp_path / "jobs", "data/qa.jsonl")
    write_jsonl(tmp_path / "data" / "qa.jsonl", QA[:4])  # relative to the working directory
    monkeypatch.chdir(tmp_path)
    code, out = prepare(spec, tmp_path / "out")
    assert code == 0 and "kept: 4 examples" in out, out


def test_set_values_are_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = spec_in(tmp_path / "jobs", "data/qa.jsonl")
    write_jsonl(tmp_path / "jobs" / "data" / "qa.jsonl", QA)
    write_jsonl(tmp_path / "mine.jsonl", QA[:3])
    monkeypatch.chdir(tmp_path)
    code, out = prepare(spec, tmp_path / "out", "--set", "dataset.source=mine.jsonl")
    assert code == 0 and "kept: 3 examples" in out, out
    # A --set value is not looked up beside the spec: jobs/data/qa.jsonl exists, ./data does not.
    code, out = prepare(spec, tmp_path / "out", "--set", "dataset.source=data/qa.jsonl")
    assert code == 65
    assert (
        "data/qa.jsonl: no such file or folder (a relative path in a spec file is looked up "
        f"next to the spec file, then in the working directory {tmp_path})"
    ) in out
