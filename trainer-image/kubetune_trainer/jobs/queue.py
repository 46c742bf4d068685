"""The local job queue: one SQLite file under the kubetune home (no server to install).

Every change is one short transaction, so a submitter, `kubetune jobs ...` and the worker
can share the file. A queue file that is locked for too long or is not a readable SQLite
database is reported with its path and left exactly as it is: nothing is recreated or
dropped behind the user's back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .model import PENDING, JobsError, UnknownJobError

QUEUE_FILE = "jobs.sqlite"
LOCK_TIMEOUT_S = 10.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    phase TEXT NOT NULL,
    reason TEXT,
    message TEXT,
    retryable INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 1,
    cwd TEXT NOT NULL,
    spec_file TEXT NOT NULL,
    output TEXT,
    run_uri TEXT,
    max_steps INTEGER,
    job_dir TEXT NOT NULL,
    child_pid INTEGER,
    worker_pid INTEGER,
    exit_code INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
)
"""
Row = dict[str, Any]


class QueueError(JobsError):
    pass


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Queue:
    def __init__(self, home: Path, timeout: float = LOCK_TIMEOUT_S) -> None:
        self.path = home / QUEUE_FILE
        self.timeout = timeout
        with self._tx() as db:
            db.execute(_SCHEMA)

    def _fail(self, exc: sqlite3.Error) -> QueueError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return QueueError(
                f"the job queue {self.path} is locked by another process (waited "
                f"{self.timeout:.0f} s): retry in a moment; nothing was changed"
            )
        return QueueError(
            f"the job queue {self.path} cannot be read ({text}): it was left untouched; "
            f"move it aside (mv {self.path} {self.path}.bad) to start an empty queue, "
            "or restore it from a copy"
        )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: writers queue up behind each other, never interleave."""
        try:
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        db.row_factory = sqlite3.Row
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise self._fail(exc) from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def add(self, row: Row) -> Row:
        """Queue a new job; an ID still Pending or Running is refused, a finished one replaced."""
        with self._tx() as db:
            old = db.execute("SELECT phase FROM jobs WHERE id = ?", (row["id"],)).fetchone()
            if old is not None and old["phase"] in (PENDING, "Running"):
                raise JobsError(
                    f"job {row['id']} is already {old['phase'].lower()}: wait for it or "
                    f"`kubetune jobs cancel {row['id']}`, or give this job another metadata.name"
                )
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            full = {"seq": seq, "phase": PENDING, "created_at": now(), **row}
            db.execute("DELETE FROM jobs WHERE id = ?", (row["id"],))
            cols = ", ".join(full)
            db.execute(
                f"INSERT INTO jobs ({cols}) VALUES ({', '.join('?' * len(full))})",
                tuple(full.values()),
            )
        return full

    def get(self, job_id: str) -> Row:
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJobError(
                f"no job {job_id} in the local queue {self.path} (see `kubetune jobs list`)"
            )
        return dict(row)

    def all(self) -> list[Row]:
        with self._tx() as db:
            return [dict(r) for r in db.execute("SELECT * FROM jobs ORDER BY seq")]

    def update(self, job_id: str, where_phase: tuple[str, ...] = (), **fields: Any) -> bool:
        """Set fields; with where_phase, only if the job is still in one of those phases."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        sql, args = f"UPDATE jobs SET {sets} WHERE id = ?", [*fields.values(), job_id]
        if where_phase:
            sql += f" AND phase IN ({', '.join('?' * len(where_phase))})"
            args += list(where_phase)
        with self._tx() as db:
            return db.execute(sql, args).rowcount == 1

    def claim(self, worker_pid: int) -> Row | None:
        """The oldest Pending job, marked Running for this worker (one transaction)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE phase = ? AND cancel_requested = 0 ORDER BY seq LIMIT 1",
                (PENDING,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET phase = 'Running', worker_pid = ?, started_at = ?, "
                "reason = NULL, message = NULL, exit_code = NULL WHERE id = ?",
                (worker_pid, now(), row["id"]),
            )
        return {**dict(row), "phase": "Running", "worker_pid": worker_pid}
