"""dataset.streaming: the prepared records stay on disk (JsonlRecords) and tokenization
streams them into the memory-mapped Arrow store, so the Python heap never holds the data;
the same records, fingerprint and tokens as in memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.data.streamed import JsonlRecords, prepare_for_training
from kubetune_trainer.data.token_cache import tokenized_splits
from tests.support.trainer.data import dataset_job


def _big(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            q = f"Case {i}: what is the normal resting heart rate of an adult patient? " * 12
            a = f"60 to 100 beats a minute ({i}). " * 6
            fh.write(json.dumps({"question": q, "answer": a}) + "\n")
    return path


def _peak(work: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        out = work()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow  # 20 MB through prepare and the tokenizer twice, under tracemalloc
def test_streamed_training_data_never_sits_in_the_python_heap(
    tmp_path: Path, tokenizer: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RANK", "0")
    path = _big(tmp_path / "big.jsonl", 20_000)
    size = path.stat().st_size
    assert size > 20_000_000
    job = dataset_job(path, format="qa", maxSeqLength=64, template="plain", streaming=True)

    def streamed(job: Any = job) -> Any:
        prep = prepare_for_training(job)
        # packing none: a packing plan holds ~180 bytes per example (not per byte of data)
        tokens = tokenized_splits(prep, tokenizer, job.spec.dataset, "none")
        rows = [tokens.train_rows[i] for i in range(0, len(tokens.train_rows), 97)]
        return prep, tokens, rows

    # Once on a small file first: the modules this imports (datasets, pyarrow) are not data.
    small = _big(tmp_path / "small.jsonl", 50)
    streamed(dataset_job(small, format="qa", maxSeqLength=64, template="plain", streaming=True))
    (prep, tokens, rows), peak = _peak(streamed)
    assert isinstance(prep.train, JsonlRecords) and isinstance(prep.validation, JsonlRecords)
    # What remains is one tokenizer batch's working set (~6 MB here), whatever the file's
    # size: records and token ids live on disk, never in lists.
    assert peak < size / 3, (peak, size)
    assert len(tokens.train) == len(prep.train) and rows

    # The same job in memory: the heap holds the data (what the bound above rules out),
    # and the records, their order and the fingerprint are the same.
    mem_job = dataset_job(path, format="qa", maxSeqLength=64, template="plain")
    mem, mem_peak = _peak(lambda: prepare_for_training(mem_job))
    assert mem_peak > size, (mem_peak, size)
    assert mem.fingerprint == prep.fingerprint
    assert prep.train[0] == mem.train[0] and prep.train[-1] == mem.train[-1]
    assert prep.validation[3:6] == mem.validation[3:6]
    assert list(prep.train)[100:103] == mem.train[100:103]
