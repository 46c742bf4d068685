"""The local backend: jobs queued in SQLite under the kubetune home, run by one worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from . import artifacts, lock
from .home import kubetune_home
from .model import CANCELLED, PENDING, RUNNING, JobInfo, JobsError, split_id
from .queue import Queue, Row, now
from .specs import check_registered_dataset, load_for_submit
from .worker import WORKER_LOST, mark_lost

WORKER_START_S = 30.0
WORKER_IDLE_EXIT_S = 600.0  # an on-demand worker goes away after this long with no job


class LocalBackend:
    name = "local"

    def __init__(self, home: Path | None = None, slots: int | None = None) -> None:
        self.home = home or kubetune_home()
        self.slots = slots or int(os.environ.get("KUBETUNE_SLOTS", "1"))
        self.queue = Queue(self.home)

    # --- submit -------------------------------------------------------------------------
    def submit(
        self, spec: str | Path | dict[str, Any], overrides: list[str] | None = None,
        output: str | None = None, start_worker: bool = True,
    ) -> str:  # fmt: skip
        job = load_for_submit(spec, overrides or [])
        ns, name = job.metadata.namespace, job.metadata.name
        job_id = f"{ns}/{name}"
        job_dir = self.home / "jobs" / ns / name
        job_dir.mkdir(parents=True, exist_ok=True)
        cwd = os.getcwd()
        run_uri = _run_uri(job, output, cwd)
        check_registered_dataset(job, _output_root(job, output, cwd))
        spec_file = job_dir / "job.yaml"
        tmp = spec_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(job.to_manifest(), sort_keys=False))
        row = {
            "id": job_id, "cwd": cwd, "spec_file": str(spec_file), "output": output,
            "run_uri": run_uri, "max_steps": job.spec.training.max_steps,
            "job_dir": str(job_dir),
        }  # fmt: skip
        self.queue.add(row)  # refuses an active job of the same ID before the file moves
        tmp.replace(spec_file)
        (job_dir / "job.log").write_bytes(b"")
        if start_worker:
            self.ensure_worker()
        return job_id

    def ensure_worker(self) -> int | None:
        """Start a detached worker unless one holds the lock; its PID (None: already ran)."""
        if lock.worker_pid(self.home) is not None:
            return None
        cmd = [sys.executable, "-m", "kubetune_trainer.cli", "worker",
               "--slots", str(self.slots), "--idle-exit", str(WORKER_IDLE_EXIT_S)]  # fmt: skip
        with open(self.home / "worker.log", "ab") as out:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, "KUBETUNE_HOME": str(self.home)},
            )  # fmt: skip
        # Return once it holds the lock, so a status read next knows a worker is on it.
        deadline = time.monotonic() + WORKER_START_S
        while lock.worker_pid(self.home) is None and proc.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return proc.pid

    # --- read ---------------------------------------------------------------------------
    def _row(self, job_id: str) -> Row:
        split_id(job_id)
        mark_lost(self.queue, self.home)
        return self.queue.get(job_id)

    def get(self, job_id: str) -> JobInfo:
        return self._info(self._row(job_id))

    def list(self) -> list[JobInfo]:
        mark_lost(self.queue, self.home)
        return [self._info(r, light=True) for r in self.queue.all()]

    def _info(self, row: Row, light: bool = False) -> JobInfo:
        info = JobInfo(
            id=row["id"], phase=row["phase"], backend=self.name, reason=row["reason"],
            message=row["message"], retryable=bool(row["retryable"]), attempt=row["attempt"],
            created_at=row["created_at"], started_at=row["started_at"],
            finished_at=row["finished_at"], run_uri=row["run_uri"], max_steps=row["max_steps"],
            extra={"exit_code": row["exit_code"], "log": str(Path(row["job_dir"]) / "job.log")},
        )  # fmt: skip
        if row["reason"] == WORKER_LOST and lock.worker_pid(self.home) is not None:
            # A worker runs again: it queues this job to resume (if it has not yet).
            info.phase, info.reason, info.retryable = PENDING, "Resuming", False
        if not light and row["phase"] != PENDING:
            rows = artifacts.metric_rows(row["run_uri"])
            steps = [r["step"] for r in rows if isinstance(r.get("step"), int)]
            info.step = max(steps) if steps else None
            ckpt = artifacts.latest_checkpoint(row["run_uri"])
            info.checkpoint = ckpt[1] if ckpt else None
        return info

    def metrics(self, job_id: str) -> dict[str, Any]:
        row = self._row(job_id)
        rows = artifacts.metric_rows(row["run_uri"])
        ckpt = artifacts.latest_checkpoint(row["run_uri"])
        return {
            "id": job_id, "phase": row["phase"], "latest": artifacts.summarize(rows),
            "rows": rows, "checkpoint": {"step": ckpt[0], "uri": ckpt[1]} if ckpt else None,
        }  # fmt: skip

    def logs(self, job_id: str, follow: bool = False, rank: int = 0) -> Iterator[str]:
        row = self._row(job_id)
        if rank != 0:
            raise JobsError(
                f"job {job_id}: the local backend keeps one log per job (rank 0 and the "
                "launcher together); use --rank 0"
            )
        path = Path(row["job_dir"]) / "job.log"
        with open(path, encoding="utf-8", errors="replace") as f:
            while True:
                line = f.readline()
                if line:
                    yield line
                    continue
                if not follow or self._row(job_id)["phase"] not in (PENDING, RUNNING):
                    rest = f.read()  # written between the last read and the phase check
                    if rest:
                        yield rest
                    return
                time.sleep(0.2)

    # --- change -------------------------------------------------------------------------
    def cancel(self, job_id: str) -> JobInfo:
        """A Pending job is Cancelled at once; a Running one gets SIGTERM from the worker
        (it saves a checkpoint and stops) and becomes Cancelled when it has exited."""
        row = self._row(job_id)
        if row["phase"] == PENDING and self.queue.update(
            job_id, (PENDING,), phase=CANCELLED, reason="Cancelled", cancel_requested=1,
            message="cancelled before it started", finished_at=now(),
        ):  # fmt: skip
            return self.get(job_id)
        if row["phase"] == RUNNING:
            self.queue.update(job_id, (RUNNING,), cancel_requested=1)
        return self.get(job_id)


def _output_root(job: Any, output: str | None, cwd: str) -> str:
    """As the run will see it (engine.run.output_root), a local root made absolute."""
    from kubetune_api.uris import is_remote

    root = str(output or os.environ.get("KUBETUNE_OUTPUT_URI") or job.spec.output.uri)
    if not is_remote(root):
        root = os.path.normpath(os.path.join(cwd, root.removeprefix("file://")))
    return root


def _run_uri(job: Any, output: str | None, cwd: str) -> str | None:
    from kubetune_trainer.storage.paths import run_location

    root = _output_root(job, output, cwd)
    try:
        return run_location(root, job.metadata.namespace, job.metadata.name)
    except Exception as exc:
        raise JobsError(str(exc)) from None
