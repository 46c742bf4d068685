"""Prepared once: records of a large local source are prepared on the first start and read
back on the next (a retry, a resume, another run on the host); a changed source, a changed
spec or a damaged entry is prepared again; old entries are evicted."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.data import evict as evict_mod
from kubetune_trainer.data import streamed
from kubetune_trainer.data.streamed import SUMMARY, prepare_for_training, source_identity
from tests.support.trainer.data import dataset_job, write_jsonl


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _rows(n: int, tag: str = "a") -> list[dict[str, str]]:
    return [{"question": f"q{i} {tag}", "answer": f"answer {i} {tag}"} for i in range(n)]


def _prepare(job: Any, caplog: pytest.LogCaptureFixture) -> tuple[Any, bool]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kubetune_trainer.data"):
        prep = prepare_for_training(job)
    return prep, any("prepared records reused" in r.getMessage() for r in caplog.records)


def test_a_second_start_reads_the_prepared_records_instead_of_preparing(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = write_jsonl(tmp_path / "qa.jsonl", _rows(60))
    job = dataset_job(src, format="qa", streaming=True)
    first, reused = _prepare(job, caplog)
    assert not reused
    train = Path(first.train.path)
    written = train.stat().st_mtime_ns
    again, reused = _prepare(job, caplog)
    assert reused
    assert Path(again.train.path) == train and train.stat().st_mtime_ns == written  # not rewritten
    assert again.fingerprint == first.fingerprint
    assert len(again.train) == len(first.train) and len(again.validation) == len(first.validation)
    assert list(again.train) == list(first.train)
    assert again.stats.read == first.stats.read == 60


def test_a_changed_source_or_spec_is_prepared_again(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = write_jsonl(tmp_path / "qa.jsonl", _rows(40, "a"))
    first, _ = _prepare(dataset_job(src, format="qa", streaming=True), caplog)
    size = src.stat().st_size
    write_jsonl(src, _rows(40, "b"))
    assert src.stat().st_size == size  # same size, other bytes
    changed, reused = _prepare(dataset_job(src, format="qa", streaming=True), caplog)
    assert not reused and changed.fingerprint != first.fingerprint
    assert all(r["completion"].endswith(" b") for r in changed.train)
    _, reused = _prepare(dataset_job(src, format="qa", streaming=True, dedupe=True), caplog)
    assert not reused  # a field that changes records is part of the key


@pytest.mark.parametrize("damage", ["no summary", "truncated split"])
def test_a_damaged_entry_is_prepared_again(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    src = write_jsonl(tmp_path / "qa.jsonl", _rows(50))
    job = dataset_job(src, format="qa", streaming=True)
    first, _ = _prepare(job, caplog)
    folder = Path(first.train.path).parent
    if damage == "no summary":
        (folder / SUMMARY).unlink()
    else:
        data = Path(first.train.path).read_bytes()
        Path(first.train.path).write_bytes(data[: len(data) // 2])
    again, reused = _prepare(job, caplog)
    assert not reused
    assert list(again.train) == list(first.train) and (folder / SUMMARY).is_file()


def test_sources_that_are_not_local_files_are_never_reused(tmp_path: Path) -> None:
    assert source_identity(dataset_job("s3://bucket/qa.jsonl", format="qa")) is None
    src = write_jsonl(tmp_path / "qa.jsonl", _rows(3))
    ident = source_identity(dataset_job(src, format="qa"))
    assert ident is not None and ident[0][:2] == [str(src), src.stat().st_size]


def test_a_local_file_over_the_threshold_streams_without_the_flag(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_jsonl(tmp_path / "qa.jsonl", _rows(30))
    monkeypatch.setattr(streamed, "STREAM_ABOVE_BYTES", src.stat().st_size - 1)
    prep = prepare_for_training(dataset_job(src, format="qa"))
    assert isinstance(prep.train, streamed.JsonlRecords)
    monkeypatch.setattr(streamed, "STREAM_ABOVE_BYTES", src.stat().st_size)
    assert isinstance(prepare_for_training(dataset_job(src, format="qa")).train, list)


def test_eviction_keeps_the_most_recently_used_and_any_entry_in_use(tmp_path: Path) -> None:
    parent = tmp_path / "prepared"
    now = time.time()
    for i in range(7):
        entry = parent / f"e{i}"
        entry.mkdir(parents=True)
        (entry / "x").write_text(json.dumps(i))
        age = 3 * 3600 if i < 6 else 60  # e6: used a minute ago
        os.utime(entry, (now - age - i, now - age - i))  # e0 newest of the old ones
    (parent / ".e-building").mkdir()
    gone = evict_mod.evict(parent, keep=2)
    left = sorted(p.name for p in parent.iterdir())
    assert left == [".e-building", "e0", "e6"], left  # e6 in use, e0 the next most recent
    assert len(gone) == 5
    evict_mod.touch(parent / "e0")
    assert time.time() - (parent / "e0").stat().st_mtime < 60
