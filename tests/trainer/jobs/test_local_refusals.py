"""Bad input to the local backend: refused with a clear message, nothing queued or lost."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from kubetune_trainer.jobs import JobsError
from kubetune_trainer.jobs.local import LocalBackend
from kubetune_trainer.jobs.lock import try_lock
from kubetune_trainer.jobs.queue import QUEUE_FILE, Queue
from tests.support.trainer.local_jobs import cli, write_job


def test_a_spec_that_does_not_validate_is_refused_before_queueing(
    home: Path, tmp_path: Path
) -> None:
    bad = write_job(tmp_path, "bad")
    bad.write_text(bad.read_text().replace("microBatchSize: 4", "microBatchSize: 0"))
    got = cli("submit", str(bad))
    assert got.returncode == 64
    assert "nothing was submitted" in got.stderr and "training.microBatchSize" in got.stderr
    assert "Traceback" not in got.stderr
    assert cli("validate", str(bad)).stderr.splitlines()[0] in got.stderr  # same messages
    assert LocalBackend().list() == []  # nothing queued, no worker started
    assert not (home / "worker.log").exists()


def test_unknown_and_malformed_job_ids(home: Path) -> None:
    got = cli("jobs", "get", "test/nope")
    assert got.returncode == 1 and "no job test/nope" in got.stderr
    assert "Traceback" not in got.stderr
    got = cli("jobs", "cancel", "nope")
    assert got.returncode == 1 and "<namespace>/<name>" in got.stderr


def test_an_active_job_id_is_not_queued_twice(home: Path, tmp_path: Path) -> None:
    backend = LocalBackend()
    job = write_job(tmp_path, "once")
    assert backend.submit(job, start_worker=False) == "test/once"
    with pytest.raises(JobsError, match="already pending"):
        backend.submit(job, start_worker=False)
    assert backend.cancel("test/once").phase == "Cancelled"  # never started
    assert backend.submit(job, start_worker=False) == "test/once"  # a finished ID is reusable


def test_a_second_worker_is_refused(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    fd = try_lock(home)  # this process plays the running worker
    assert fd is not None
    try:
        got = cli("worker", "--idle-exit", "1", timeout=60)
    finally:
        os.close(fd)
    assert got.returncode == 1
    assert "a worker is already running" in got.stderr and "Traceback" not in got.stderr


def test_a_corrupt_queue_file_is_reported_and_left_as_is(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / QUEUE_FILE).write_bytes(b"not a database, but someone's data" * 100)
    before = (home / QUEUE_FILE).read_bytes()
    got = cli("jobs", "list")
    assert got.returncode == 1 and "Traceback" not in got.stderr
    assert "cannot be read" in got.stderr and "left untouched" in got.stderr
    assert (home / QUEUE_FILE).read_bytes() == before


def test_a_locked_queue_file_is_a_clear_error_and_loses_nothing(home: Path, tmp_path: Path) -> None:
    backend = LocalBackend()
    backend.submit(write_job(tmp_path, "kept"), start_worker=False)
    holder = sqlite3.connect(home / QUEUE_FILE, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long write
    try:
        with pytest.raises(JobsError, match="is locked by another process"):
            Queue(home, timeout=0.3).all()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [j.id for j in backend.list()] == ["test/kept"]
