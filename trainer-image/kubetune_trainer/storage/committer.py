"""Checkpoint commits in the background: training goes on while the files upload.

The training loop calls `submit(folder, step, ...)` after the Trainer saved a checkpoint.
The folder's files are hard-linked into a private pending folder at once (no bytes copied;
the Trainer may rotate its own folder away meanwhile), and one background thread commits
them with `CheckpointStore.commit` (files in parallel, MANIFEST.json last, only after every
part is written), then applies retention. At most one commit is in flight: a second
`submit` first waits for the previous one, so disk use stays bounded to two checkpoints.

Errors surface on the training thread: `raise_failed()` (called every step), `submit` and
`wait` re-raise what the background commit raised, so a failed upload still fails the job
with the storage exit code. The thread is not a daemon: an exception or a SIGTERM that
ends the training loop still lets the in-flight commit finish before the process exits.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import CheckpointStore

log = logging.getLogger(__name__)
THREAD_PREFIX = "kubetune-commit-"


def wait_for_commits() -> None:
    """Join every background commit still running (before a process skips its teardown)."""
    for t in threading.enumerate():
        if t.name.startswith(THREAD_PREFIX) and t is not threading.current_thread():
            t.join()


@dataclass(frozen=True)
class Committed:
    step: int
    uri: str
    seconds: float  # upload + manifest + retention, in the background
    stall: float  # what the training thread spent in `submit` (link + waiting)


def link_tree(src: Path, dest: Path) -> None:
    """`dest` gets the files of `src` as hard links (a copy where links are impossible)."""

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:  # another filesystem, or one without hard links
            shutil.copy2(s, d)

    shutil.copytree(src, dest, copy_function=link)


class BackgroundCommitter:
    def __init__(
        self,
        ckpts: CheckpointStore,
        keep_last: int,
        pending_root: Path,
        after: Callable[[], None] | None = None,
    ) -> None:
        self.after = after  # runs in the background after each commit (e.g. metrics upload)
        self.ckpts = ckpts
        self.keep_last = keep_last
        self.pending_root = Path(pending_root)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._done: list[Committed] = []
        self._lock = threading.Lock()

    def submit(self, folder: Path, step: int, protect: set[int | str]) -> float:
        """Hand `folder` (checkpoint of `step`) to the background; returns the stall in s."""
        t0 = time.monotonic()
        self.wait()  # one commit in flight at most; raises what the previous one raised
        pending = self.pending_root / f".commit-{step}"
        if pending.exists():
            shutil.rmtree(pending)
        self.pending_root.mkdir(parents=True, exist_ok=True)
        link_tree(folder, pending)
        stall = time.monotonic() - t0
        self._thread = threading.Thread(
            target=self._commit,
            args=(pending, step, set(protect), stall),
            name=f"{THREAD_PREFIX}{step}",
            daemon=False,
        )
        self._thread.start()
        return stall

    def _commit(self, pending: Path, step: int, protect: set[int | str], stall: float) -> None:
        t0 = time.monotonic()
        try:
            uri = self.ckpts.commit(pending, step)
            for gone in self.ckpts.retain(self.keep_last, protect=protect):
                log.info("removed old checkpoint %s", gone)
            if self.after is not None:
                self.after()
            with self._lock:
                self._done.append(Committed(step, uri, time.monotonic() - t0, stall))
        except BaseException as e:  # handed to the training thread, never lost
            with self._lock:
                self._error = e
        finally:
            shutil.rmtree(pending, ignore_errors=True)

    def raise_failed(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def wait(self) -> None:
        """Block until the in-flight commit ended; re-raise its error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.raise_failed()

    def drain(self) -> list[Committed]:
        """Commits finished since the last call, oldest first (for the training thread)."""
        with self._lock:
            done, self._done = self._done, []
        return done

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
