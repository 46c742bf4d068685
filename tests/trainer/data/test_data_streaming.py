"""prepare_to_files streams records to JSONL: the same records, split and fingerprint as
prepare() in memory, a split that never needs the whole data, and a small memory peak."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.data.prepare import group_key, prepare, prepare_to_files, split_score
from kubetune_trainer.errors import BadDataError
from tests.support.trainer.data import REPO, dataset_job, write_jsonl

DATA = REPO / "examples" / "data"
CLS = {"task": "sequence_classification", "numLabels": 3}
# (name, source, dataset extras): every format, and every way the split is made.
CASES = [
    ("finance_qa", DATA / "finance_qa/train.jsonl", {}),
    ("qa", DATA / "medical_qa/train.jsonl", {"validation": {"fraction": 0.3}}),
    ("rated-sft", DATA / "preference/rated.jsonl", {"rated": {"minRating": 4}}),
    ("rated-dpo", DATA / "preference/rated.jsonl", {"_objective": "dpo"}),
    ("preference", DATA / "preference/pairs.jsonl", {"_objective": "dpo"}),
    ("ranked", DATA / "preference/ranked.jsonl", {"_objective": "ranking"}),
    ("papers", DATA / "papers/papers.json", {"max_seq_length": 128, "streaming": True}),
    ("papers-classes", DATA / "papers/papers.json",
     {"papers": {"labelField": "label"}, "_model": CLS}),
    ("trading", DATA / "trading/prices.csv",
     {"trading": {"news": str(DATA / "trading/news.jsonl")}, "validation": {"fraction": 0.2}}),
    ("validation-source", DATA / "medical_qa/train.jsonl",
     {"validation": {"source": str(DATA / "medical_qa/train.jsonl")},
      "max_examples": 7}),
]  # fmt: skip


def lines(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(("name", "source", "extra"), CASES, ids=[c[0] for c in CASES])
def test_streamed_files_equal_the_records_in_memory(
    tmp_path: Path, name: str, source: Path, extra: dict, tokenizer: Any
) -> None:
    job = dataset_job(source, **extra)
    tok = tokenizer if name == "papers" else None
    data = prepare(job, tok)
    files = prepare_to_files(job, tmp_path / "out", tok)
    assert files.fingerprint == data.fingerprint
    assert lines(files.train_path) == data.train and lines(files.validation_path) == data.validation
    assert (files.train_examples, files.validation_examples) == (
        len(data.train), len(data.validation))  # fmt: skip
    assert (files.kind, files.format, files.stats, files.label_names, files.exact_chunks) == (
        data.kind, data.format, data.stats, data.label_names, data.exact_chunks)  # fmt: skip
    assert data.train and data.validation
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "train.jsonl", "validation.jsonl"]  # fmt: skip


def test_fingerprint_names_split_membership_and_order(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": f"Q{i}?", "answer": f"A{i}."}
                                               for i in range(30)])  # fmt: skip
    a = prepare(dataset_job(path))
    moved = prepare(dataset_job(path, _training={"seed": 5}))
    assert sorted(map(json.dumps, a.train + a.validation)) == sorted(
        map(json.dumps, moved.train + moved.validation)
    )  # same records, other split
    assert a.validation != moved.validation and a.fingerprint != moved.fingerprint


def qa_rows(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"question": f"Question {i}?", "answer": f"Answer {i}."} for i in range(start, n)]


def test_split_of_a_record_does_not_depend_on_the_others(tmp_path: Path) -> None:
    """What lets a stream be split as it is read: adding rows moves no earlier row."""
    small = prepare(dataset_job(write_jsonl(tmp_path / "a.jsonl", qa_rows(400))))
    big = prepare(dataset_job(write_jsonl(tmp_path / "b.jsonl", qa_rows(4000))))
    held_small = {r["prompt"] for r in small.validation}
    held_big = {r["prompt"] for r in big.validation}
    assert held_small == {p for p in held_big if int(p.split()[1][:-1]) < 400}
    assert 0.085 < len(big.validation) / 4000 < 0.115  # fraction 0.1 on average
    for rec in big.validation[:50]:
        assert split_score(group_key(rec), 42) < 0.1


def test_groups_never_straddle_the_split(tmp_path: Path) -> None:
    # Paraphrases share an answer (their group): all of them land on one side.
    rows = [{"question": f"{how} {i}?", "answer": f"Answer {i}."}
            for i in range(300) for how in ("What is", "Briefly, what is")]  # fmt: skip
    data = prepare(dataset_job(write_jsonl(tmp_path / "p.jsonl", rows)))
    train = {r["completion"] for r in data.train}
    held = {r["completion"] for r in data.validation}
    assert held and not train & held
    assert all(sum(r["completion"] == c for r in data.validation) == 2 for c in list(held)[:10])


def test_small_data_still_gets_both_splits(tmp_path: Path) -> None:
    rows = qa_rows(3)
    keys = [group_key({"meta": {"group": r["answer"]}}) for r in rows]
    scores = [split_score(k, 42) for k in keys]
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    # No score under 0.01: the lowest-scoring group validates anyway ...
    assert min(scores) >= 0.01
    few = prepare(dataset_job(path, validation={"fraction": 0.01}))
    lowest = rows[scores.index(min(scores))]["answer"]
    assert [r["completion"] for r in few.validation] == [lowest]
    # ... and when every group scores under the fraction, the highest one trains.
    assert max(scores) < 0.99
    most = prepare(dataset_job(path, validation={"fraction": 0.99}))
    highest = rows[scores.index(max(scores))]["answer"]
    assert [r["completion"] for r in most.train] == [highest]
    assert len(most.validation) == 2
    one = prepare(dataset_job(write_jsonl(tmp_path / "one.jsonl", rows[:1] * 4),
                           validation={"fraction": 0.99}))  # fmt: skip
    assert len(one.train) == 4 and one.validation == []  # one group: nothing to hold out
    for job in (dataset_job(path, validation={"fraction": 0.01}),
                dataset_job(path, validation={"fraction": 0.99})):  # fmt: skip
        files = prepare_to_files(job, tmp_path / "out")
        assert files.fingerprint == prepare(job).fingerprint


def test_failed_preparation_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = write_jsonl(tmp_path / "bad.jsonl", [*qa_rows(5), {"question": "x"}])
    with pytest.raises(BadDataError, match=r"bad.jsonl:6: missing field `answer`"):
        prepare_to_files(dataset_job(path), out)
    assert list(out.iterdir()) == []


def test_streaming_prepare_memory_stays_far_below_file_size(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(12_000):
            q = f"Case {i}: what is the normal resting heart rate of an adult patient? " * 2
            fh.write(json.dumps({"question": q, "answer": f"60 to 100 beats a minute ({i}). " * 3})
                     + "\n")  # fmt: skip
    size = path.stat().st_size
    assert size > 3_000_000
    job = dataset_job(path)
    tracemalloc.start()
    try:
        files = prepare_to_files(job, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, (peak, size)  # a row at a time, not the file
    assert files.train_examples + files.validation_examples == files.stats.kept == 12_000
    assert len(lines(files.train_path)) == files.train_examples
    assert len(lines(files.validation_path)) == files.validation_examples
    data = prepare(job)  # the same data in memory: same fingerprint
    assert data.fingerprint == files.fingerprint
    assert len(data.validation) == files.validation_examples
