"""The committed sample data: clean, detected correctly, small, and reproducible."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubetune_trainer.data import parse_finance_answer, prepare
from tests.support.trainer.data import REPO, dataset_job

DATA = REPO / "examples" / "data"
# (file, dataset extras, objective, expected format, expected kind, rows read)
SAMPLES = [
    ("finance_qa/train.jsonl", {}, "sft", "finance_qa", "sft", 240),
    ("medical_qa/train.jsonl", {}, "sft", "qa", "sft", 60),
    ("preference/rated.jsonl", {}, "dpo", "rated", "preference", 80),
    ("preference/pairs.jsonl", {}, "dpo", "preference", "preference", 80),
    ("preference/ranked.jsonl", {}, "ranking", "ranked", "ranked", 60),
    ("papers/papers.json", {}, "sft", "papers", "text", 12),
    ("trading/prices.csv", {"trading": {"news": str(DATA / "trading/news.jsonl")}}, "sft",
     "trading", "sft", 1258),
]  # fmt: skip


@pytest.mark.parametrize(("name", "extra", "objective", "fmt", "kind", "read"), SAMPLES)
def test_sample_is_clean_and_auto_detected(
    name: str, extra: dict, objective: str, fmt: str, kind: str, read: int
) -> None:
    path = DATA / name
    assert path.stat().st_size < 300_000
    data = prepare(dataset_job(path, _objective=objective, **extra))  # format: auto
    assert (data.format, data.kind, data.stats.read) == (fmt, kind, read)
    assert data.stats.problems == [] and data.train and data.validation


def test_finance_sample_is_consistent_and_learnable() -> None:
    data = prepare(dataset_job(DATA / "finance_qa/train.jsonl"))
    for rec in data.train + data.validation:
        parsed = parse_finance_answer(rec["completion"])
        assert parsed["complete"] and parsed["citations"] and parsed["risk"]
        assert len(rec["completion"]) < 330  # ~90 tokens for a 49k-vocab BPE
    needs = [r for r in data.train if "Context:" not in r["prompt"]
             and "<" in r["completion"]]  # fmt: skip
    assert len(needs) > 60
    # Paraphrases ("Briefly, ...") share their answer and stay on one side of the split.
    assert not {r["completion"] for r in data.train} & {r["completion"] for r in data.validation}


@pytest.mark.parametrize("folder", ["finance_qa", "preference", "trading", "papers"])
def test_generators_reproduce_the_committed_files(tmp_path: Path, folder: str) -> None:
    src = DATA / folder
    work = tmp_path / folder
    shutil.copytree(src, work)
    subprocess.run([sys.executable, str(work / "generate.py")], check=True,
                   capture_output=True, cwd=tmp_path)  # fmt: skip
    for f in sorted(src.iterdir()):
        if f.suffix in (".jsonl", ".json", ".csv"):
            assert hashlib.sha256((work / f.name).read_bytes()).hexdigest() == hashlib.sha256(
                f.read_bytes()).hexdigest(), f.name  # fmt: skip
