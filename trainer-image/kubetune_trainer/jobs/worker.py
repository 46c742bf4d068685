"""The local worker: runs queued jobs as child processes, at most `slots` at a time.

Each job runs exactly like `kubetune run JOB.yaml` (same command, same code path) in the
folder it was submitted from, its output in <home>/jobs/<ns>/<name>/job.log. The worker is
a detached process (its own session), so jobs survive the terminal that submitted them.

Cancel: the worker sends SIGTERM; the trainer saves a checkpoint and exits 76 -> Cancelled.
Worker killed: every child gets SIGTERM from the kernel (PR_SET_PDEATHSIG), checkpoints and
exits; the job stays Running in the queue until a reader or the next worker sees no
worker holding the lock and marks it Failed (WorkerLost, retryable). The next worker
queues it again and `kubetune run` resumes it from its last committed checkpoint.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubetune_api.constants import ExitCode
from kubetune_api.termination import TerminationSummary

from . import lock
from .model import CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, JobsError
from .queue import Queue, Row, now

log = logging.getLogger(__name__)
POLL_S = 0.5
WORKER_LOST = "WorkerLost"
_REASONS = {ExitCode.INVALID_SPEC: "InvalidSpec", ExitCode.BAD_DATA: "BadData",
            ExitCode.OOM: "OutOfMemory", ExitCode.STORAGE: "StorageError",
            ExitCode.RETRYABLE: "RetryableFailure", ExitCode.INTERNAL: "TrainerError"}  # fmt: skip


class WorkerBusyError(JobsError):
    pass


def mark_lost(queue: Queue, home: Path) -> list[str]:
    """Jobs left Running by a worker that is gone -> Failed (WorkerLost, retryable)."""
    if lock.worker_pid(home) is not None:
        return []
    lost = []
    for row in queue.all():
        if row["phase"] == RUNNING and queue.update(
            row["id"], (RUNNING,), phase=FAILED, reason=WORKER_LOST, retryable=1,
            message="the worker stopped while this job ran; the next worker resumes it "
            "from its last committed checkpoint", finished_at=now(),
        ):  # fmt: skip
            lost.append(row["id"])
    return lost


def _die_with_parent(libc: Any, parent: int) -> Any:
    """In the child: SIGTERM when the worker dies (the trainer then checkpoints and stops)."""

    def setup() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the worker died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


def child_command(row: Row) -> list[str]:
    cmd = [sys.executable, "-m", "kubetune_trainer.cli", "run", row["spec_file"]]
    if row["output"]:
        cmd += ["--output", row["output"]]
    return cmd


def _summary(job_dir: Path) -> TerminationSummary:
    try:
        return TerminationSummary.read((job_dir / "summary.json").read_text())
    except OSError:
        return TerminationSummary()


class Worker:
    def __init__(self, home: Path, slots: int = 1, idle_exit: float | None = None) -> None:
        if slots < 1:
            raise JobsError(f"--slots must be at least 1, got {slots}")
        self.home, self.slots, self.idle_exit = home, slots, idle_exit
        self.queue = Queue(home)
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.signalled: set[str] = set()
        self.stopping = False
        self._libc = ctypes.CDLL(None, use_errno=True)  # loaded before any fork

    def run(self) -> None:
        fd = lock.try_lock(self.home)
        if fd is None:
            pid = lock.worker_pid(self.home)
            raise WorkerBusyError(
                f"a worker is already running for {self.home} (pid {pid}); it runs every "
                "queued job: one worker per kubetune home"
            )
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        try:
            self._recover()
            idle_since = time.monotonic()
            while not self.stopping:
                self._reap()
                self._cancel_requested()
                self._start_pending()
                if self.children:
                    idle_since = time.monotonic()
                elif self.idle_exit is not None and time.monotonic() - idle_since > self.idle_exit:
                    log.info("no job for %.0f s: worker exits", self.idle_exit)
                    break
                time.sleep(POLL_S)
            self._shutdown()
        finally:
            os.close(fd)

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _recover(self) -> None:
        """Our lock is held: anything Running belonged to a dead worker. Resume it."""
        for row in self.queue.all():
            if row["phase"] == RUNNING:
                self._wait_gone(row.get("child_pid"))
                self.queue.update(row["id"], (RUNNING,), phase=FAILED, reason=WORKER_LOST,
                                  retryable=1, finished_at=now())  # fmt: skip
        for row in self.queue.all():
            if row["phase"] == FAILED and row["reason"] == WORKER_LOST:
                self._wait_gone(row.get("child_pid"))
                log.info("%s: queued again to resume after a lost worker", row["id"])
                self.queue.update(row["id"], (FAILED,), phase=PENDING, attempt=row["attempt"] + 1,
                                  reason="Resuming", finished_at=None)  # fmt: skip

    @staticmethod
    def _wait_gone(pid: int | None, timeout: float = 120.0) -> None:
        """A lost worker's child is still saving its checkpoint: let it finish first."""
        if not pid:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                return  # not ours (the PID was reused)
            time.sleep(POLL_S)

    def _start_pending(self) -> None:
        while len(self.children) < self.slots and not self.stopping:
            row = self.queue.claim(os.getpid())
            if row is None:
                return
            job_dir = Path(row["job_dir"])
            env = {**os.environ, "PYTHONUNBUFFERED": "1",
                   "KUBETUNE_TERMINATION_LOG": str(job_dir / "summary.json")}  # fmt: skip
            (job_dir / "summary.json").unlink(missing_ok=True)
            setup = _die_with_parent(self._libc, os.getpid())
            with open(job_dir / "job.log", "ab") as out:
                out.write(f"--- attempt {row['attempt']} started {now()}\n".encode())
                out.flush()
                child = subprocess.Popen(
                    child_command(row), cwd=row["cwd"], env=env, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=subprocess.STDOUT, preexec_fn=setup,
                )  # fmt: skip
            self.children[row["id"]] = child
            self.queue.update(row["id"], child_pid=child.pid)
            log.info("%s: started (pid %d)", row["id"], child.pid)

    def _cancel_requested(self) -> None:
        for job_id, child in self.children.items():
            if job_id not in self.signalled and self.queue.get(job_id)["cancel_requested"]:
                child.send_signal(signal.SIGTERM)
                self.signalled.add(job_id)

    def _reap(self) -> None:
        for job_id, child in list(self.children.items()):
            code = child.poll()
            if code is None:
                continue
            del self.children[job_id]
            self.signalled.discard(job_id)
            self._finish(self.queue.get(job_id), code)

    def _finish(self, row: Row, code: int) -> None:
        summary = _summary(Path(row["job_dir"]))
        msg = summary.message or None
        fields: dict[str, Any] = {"exit_code": code, "finished_at": now(), "child_pid": None}
        if row["cancel_requested"]:
            fields.update(phase=CANCELLED, reason="Cancelled", retryable=0,
                          message=f"cancelled; last checkpoint {summary.checkpoint}"
                          if summary.checkpoint else "cancelled")  # fmt: skip
        elif code == ExitCode.OK:
            fields.update(phase=SUCCEEDED, reason="Completed", message=msg, retryable=0)
        elif self.stopping and code in (ExitCode.PREEMPTED, -signal.SIGTERM):
            fields.update(
                phase=PENDING,
                reason="WorkerStopped",
                finished_at=None,
                attempt=row["attempt"] + 1,
                message="resumes with the next worker",
            )
        else:
            reason = _REASONS.get(code, "Preempted" if code == ExitCode.PREEMPTED else "Failed")
            retryable = code not in ExitCode.PERMANENT
            fields.update(phase=FAILED, reason=reason, retryable=int(retryable),
                          message=msg or f"exit code {code}")  # fmt: skip
        self.queue.update(row["id"], **fields)
        log.info("%s: %s (exit code %d)", row["id"], fields["phase"], code)

    def _shutdown(self) -> None:
        """Stopped by a signal: SIGTERM every child (they checkpoint), then requeue them."""
        for child in self.children.values():
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 120
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(POLL_S)
        for child in self.children.values():
            child.kill()
            child.wait()
        self._reap()
