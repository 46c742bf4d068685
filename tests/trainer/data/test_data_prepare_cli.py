"""`kubetune prepare`: files written, counts and fingerprint printed, exit codes 64/65."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kubetune_trainer.cli import main
from tests.support.trainer.data import REPO, job_dict, write_jsonl

QA = [{"question": f"What is test {i}?", "answer": f"Result {i}. " * (1 + 20 * (i == 3))}
      for i in range(10)]  # fmt: skip


def run(tmp_path: Path, job: dict[str, Any], *args: str) -> Any:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return CliRunner().invoke(main, ["prepare", str(path), *args])


def test_prepare_writes_splits_and_counts(tmp_path: Path, tokenizer: Any) -> None:
    tokenizer.save_pretrained(tmp_path / "tok")
    job = job_dict(str(write_jsonl(tmp_path / "qa.jsonl", QA)), maxSeqLength=48, template="plain")
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


EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
# The committed sample standing in for an s3:// source, by dataset format.
LOCAL_SAMPLE = {"papers": "examples/data/papers/papers.json"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_prepare_every_example_job(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's "done when": `kubetune prepare examples/<job>.yaml` writes the JSONL and
    prints counts and the fingerprint, for every example job."""
    from kubetune_api.loader import load_job
    from kubetune_trainer.data import prepare

    monkeypatch.chdir(REPO)  # sample paths in the examples are relative to the repo
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds = yaml.safe_load(example.read_text())["spec"]["dataset"]
    overrides = []
    if ds["source"].startswith("s3://"):
        overrides = ["--set", f"dataset.source={LOCAL_SAMPLE[ds['format']]}"]
    assert not any(str(v).startswith("s3://") for v in (ds.get("trading") or {}).values())
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["prepare", str(example), "--out", str(out), *overrides])
    assert res.exit_code == 0, res.output
    printed = res.stdout.splitlines()
    read = re.fullmatch(r"read: (\d+) rows; skipped \(bad\): 0; filtered: (\d+)", printed[1])
    kept = re.fullmatch(r"kept: (\d+) examples \(train (\d+), validation (\d+)\)", printed[2])
    assert read and kept, res.output
    n_kept, n_train, n_val = map(int, kept.groups())
    assert n_kept == n_train + n_val and n_train and n_val
    train = (out / "train.jsonl").read_text().splitlines()
    val = (out / "validation.jsonl").read_text().splitlines()
    assert (len(train), len(val)) == (n_train, n_val)
    max_len = yaml.safe_load(example.read_text())["spec"]["dataset"]["maxSeqLength"]
    truncated = next(line for line in printed if line.startswith("truncated: "))
    counted = re.fullmatch(rf"truncated: \d+ examples longer than maxSeqLength {max_len}",
                           truncated)  # fmt: skip
    assert counted or truncated.startswith("truncated: not counted: ")
    if example.stem in ("quickstart", "genomics-bert"):  # builtin bases load offline
        assert counted, truncated
    fp = re.fullmatch(r"fingerprint: (sha256:[0-9a-f]{64})", printed[printed.index(truncated) + 1])
    assert fp, res.output
    job = load_job(example, overrides[1:])
    data = prepare(job)
    if not (data.format == "papers" and data.kind == "text" and counted):  # else re-chunked
        assert fp.group(1) == data.fingerprint
        assert [json.loads(line) for line in train] == data.train


def test_output_is_the_artifact_root_and_json_says_what_text_says(
    tmp_path: Path, tokenizer: Any
) -> None:
    tokenizer.save_pretrained(tmp_path / "tok")
    job = job_dict(str(write_jsonl(tmp_path / "qa.jsonl", QA)), maxSeqLength=48, template="plain")
    job["spec"]["model"]["base"] = str(tmp_path / "tok")
    text = run(tmp_path, job, "--output", str(tmp_path / "root"))
    assert text.exit_code == 0, text.output
    folder = tmp_path / "root" / "default" / "t" / "prepared"  # ROOT/<namespace>/<name>/prepared
    assert f"wrote: {folder / 'train.jsonl'}, {folder / 'validation.jsonl'}" in text.stdout
    res = run(tmp_path, job, "--output", str(tmp_path / "root"), "-o", "json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)  # one JSON document, nothing else on stdout
    assert (got["read"], got["kept"], got["train_examples"], got["validation_examples"]) == (
        10, 10, 9, 1
    )  # fmt: skip
    assert got["truncated"] == 1 and got["truncated_not_counted"] is None
    assert got["max_seq_length"] == 48 and got["format"] == "qa" and got["kind"] == "sft"
    assert got["train_path"] == str(folder / "train.jsonl")
    assert f"fingerprint: {got['fingerprint']}" in text.stdout
    assert set(got) == {
        "format", "kind", "read", "skipped", "filtered", "filtered_by", "kept",
        "train_examples", "validation_examples", "problems", "duplicates",
        "duplicates_removed", "validation_note", "warned", "warnings", "truncated",
        "truncated_not_counted", "max_seq_length", "fingerprint", "train_path",
        "validation_path",
    }  # fmt: skip


def test_out_is_a_deprecated_alias_and_output_must_be_local(tmp_path: Path) -> None:
    job = job_dict(str(write_jsonl(tmp_path / "qa.jsonl", QA)))
    res = run(tmp_path, job, "--out", str(tmp_path / "here"))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "here" / "train.jsonl").is_file()  # the folder itself, as before
    assert "--out is deprecated: use --output ROOT" in res.stderr
    s3 = run(tmp_path, job, "--output", "s3://bucket/runs")
    assert s3.exit_code == 2 and "prepare writes local files" in s3.output
    assert not list(tmp_path.glob("**/prepared"))
    show = run(tmp_path, job, "--show", "2", "-o", "json")
    assert show.exit_code == 2 and "--show prints text" in show.output
