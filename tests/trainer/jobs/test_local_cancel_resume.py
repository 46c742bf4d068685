"""Stopping local jobs: cancel -> SIGTERM -> a committed checkpoint and Cancelled; a killed
worker -> the job is Failed (retryable) and the next worker resumes it from its checkpoint."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from kubetune_trainer.jobs import Client
from kubetune_trainer.jobs.lock import worker_pid
from kubetune_trainer.storage import open_store
from kubetune_trainer.storage.checkpoints import CheckpointStore
from tests.support.trainer.local_jobs import cli, poll, write_job


def _committed(run: Path) -> list[int]:
    return [c.step for c in CheckpointStore(open_store(str(run))).list_committed()]


@pytest.mark.slow
def test_cancel_mid_run_leaves_a_committed_checkpoint_and_cancelled(
    home: Path, tmp_path: Path
) -> None:
    client = Client()
    ref = client.submit(write_job(tmp_path, "long", steps=400, save=3))
    assert ref.id == "test/long"
    poll(lambda: ref.get().checkpoint, timeout=180, what="a first checkpoint")
    assert ref.cancel().phase == "Running"  # stopping: the trainer saves first
    final = ref.wait(timeout=120)
    assert final.phase == "Cancelled" and final.reason == "Cancelled"
    assert final.extra["exit_code"] == 76  # the trainer's preemption path, not a kill
    steps = _committed(tmp_path / "runs" / "test" / "long")
    assert steps and max(steps) < 400
    assert final.checkpoint is not None and final.checkpoint.endswith(f"step-{max(steps):06d}")
    assert "SIGTERM received" in "".join(ref.logs())
    assert not (tmp_path / "runs" / "test" / "long" / "adapter").exists()


@pytest.mark.slow
def test_a_killed_worker_fails_the_job_retryable_and_a_new_worker_resumes_it(
    home: Path, tmp_path: Path
) -> None:
    client = Client()
    ref = client.submit(write_job(tmp_path, "survivor", steps=40, save=3))
    poll(lambda: ref.get().checkpoint, timeout=180, what="a first checkpoint")
    pid = worker_pid(home)
    assert pid and pid > 0
    os.kill(pid, signal.SIGKILL)  # no clean-up of its own: only the kernel's lock release
    poll(lambda: worker_pid(home) is None, timeout=30, what="the lock released")

    lost = ref.get()
    assert lost.phase == "Failed" and lost.reason == "WorkerLost" and lost.retryable
    assert "retryable" in cli("jobs", "get", ref.id).stdout
    run = tmp_path / "runs" / "test" / "survivor"
    # The orphaned trainer got SIGTERM from the kernel: it saves a checkpoint and exits.
    poll(lambda: "exit code 76" in "".join(ref.logs()), timeout=120, what="the trainer's exit")
    saved = max(_committed(run))
    assert 0 < saved < 40

    assert client.backend.ensure_worker()  # `kubetune worker` again (submit would do it too)
    final = ref.wait(timeout=240)
    assert final.phase == "Succeeded" and final.attempt == 2 and final.step == 40
    log = "".join(ref.logs())
    assert f"resuming from {run / 'checkpoints' / f'step-{saved:06d}'}" in log
