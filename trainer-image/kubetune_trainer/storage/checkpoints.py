"""Atomic checkpoints on any Store: files first, MANIFEST.json last (the commit marker).

Layout: `<prefix>/step-000100/<files...>` plus `<prefix>/step-000100/MANIFEST.json`.

A checkpoint is *committed* when its manifest exists and every file it lists exists with
the listed size; anything else (no manifest, a missing or short file) is *torn* and does
not exist for resume. `fetch` also checks every sha256, so corruption found only then
makes `latest_verified` fall back to the previous committed checkpoint.

Distributed runs: only rank 0 may call `commit` and `retain` (the caller decides; other
ranks must not write). Every rank may call `latest`/`fetch` to resume.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import Store, join_key
from .folders import check_folder, commit_folder, fetch_folder
from .manifest import MANIFEST, verify_dir, write_manifest

__all__ = [
    "CheckpointRef",
    "CheckpointStore",
    "TornCheckpoint",
    "TornCheckpointError",
    "step_name",
    "verify_dir",
    "write_manifest",
]

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d{6,})$")


class TornCheckpointError(Exception):
    """A checkpoint failed verification; `latest_verified` falls back past it."""


def step_name(step: int) -> str:
    return f"step-{step:06d}"


@dataclass(frozen=True)
class CheckpointRef:
    step: int
    name: str  # step-000100
    key: str  # <prefix>/step-000100 (relative to the store root)
    uri: str  # full URI, for status, logs and MLflow
    manifest: dict[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True)
class TornCheckpoint:
    step: int
    name: str
    uri: str
    reason: str


class CheckpointStore:
    def __init__(self, store: Store, prefix: str = "checkpoints", parallel: int = 4) -> None:
        self.store = store
        self.parallel = max(1, parallel)  # files uploaded at once by `commit`
        self.prefix = prefix.strip("/")
        # Steps whose bytes failed sha256 in `fetch`: not counted as committed by `retain`,
        # so resuming from an older checkpoint never lets retention delete that one.
        self.damaged: set[int] = set()

    def _dir_key(self, step: int) -> str:
        return join_key(self.prefix, step_name(step))

    # -- writing (rank 0 only) -------------------------------------------------------------
    def commit(self, local_dir: str | Path, step: int) -> str:
        """Upload every file of `local_dir`, then its manifest; returns the checkpoint URI.

        If this raises, nothing was committed: the files already uploaded form a torn
        checkpoint that `latest` skips, and the next `commit` of the same step overwrites it.
        """
        base = self._dir_key(step)
        # Re-committing a step (a retry after a failed upload) must not leave a stale
        # manifest that could vouch for a mix of old and new files while uploading.
        if self.store.exists(join_key(base, MANIFEST)):
            self.store.delete_prefix(base + "/")
        commit_folder(self.store, Path(local_dir), base, step, self.parallel)
        return self.store.uri(base)

    def retain(self, keep_last: int, protect: set[int | str] | None = None) -> list[str]:
        """Delete committed checkpoints older than the newest `keep_last`; returns their URIs.

        `protect` holds steps or names (step-000100) never to delete (e.g. the best by eval
        loss). Torn checkpoints are left alone: one may be a commit still in progress; so are
        damaged ones found by `fetch` (kept for inspection, never counted as the newest).
        """
        if keep_last < 1:
            raise ValueError("keep_last must be at least 1")
        protected = {step_name(p) if isinstance(p, int) else p for p in (protect or set())}
        committed = [r for r in self.list_committed() if r.step not in self.damaged]
        deleted = []
        for ref in committed[:-keep_last]:
            if ref.name in protected:
                continue
            # Manifest first: from this moment the checkpoint is uncommitted, never half-there.
            self.store.delete_prefix(join_key(ref.key, MANIFEST))
            self.store.delete_prefix(ref.key + "/")
            deleted.append(ref.uri)
        return deleted

    def set_aside(self, dest_prefix: str) -> list[str]:
        """Move every checkpoint (committed or torn) under `dest_prefix` (e.g.
        superseded/<uid>/checkpoints): a fresh start keeps an earlier run's checkpoints
        without ever resuming them. Returns the moved checkpoints' new URIs.

        Copies first, manifests last; then deletes the originals, manifests first: an
        interruption leaves each checkpoint either still here or committed there.
        """
        keys = self.store.list(self.prefix + "/")
        if not keys:
            return []
        dest = dest_prefix.strip("/")
        moved = sorted(keys, key=lambda k: k.endswith("/" + MANIFEST))
        for key in moved:
            self.store.copy(key, join_key(dest, key[len(self.prefix) + 1 :]))
        for key in moved:
            if key.endswith("/" + MANIFEST):
                self.store.delete_prefix(key)
        self.store.delete_prefix(self.prefix + "/")
        steps = sorted({k[len(self.prefix) + 1 :].split("/", 1)[0] for k in keys})
        return [self.store.uri(join_key(dest, s)) for s in steps]

    # -- reading (any rank) ----------------------------------------------------------------
    def _scan(self) -> tuple[list[CheckpointRef], list[TornCheckpoint]]:
        sizes = self.store.sizes(self.prefix + "/")
        by_step: dict[int, dict[str, int]] = {}
        for key, size in sizes.items():
            rel = key[len(self.prefix) + 1 :]
            head, _, rest = rel.partition("/")
            m = _STEP_DIR.match(head)
            if m and rest:
                by_step.setdefault(int(m.group(1)), {})[rest] = size
        committed, torn = [], []
        for step in sorted(by_step):
            files = by_step[step]
            key = self._dir_key(step)
            uri = self.store.uri(key)
            reason, manifest = self._check(key, files)
            if reason:
                torn.append(TornCheckpoint(step, step_name(step), uri, reason))
            else:
                committed.append(CheckpointRef(step, step_name(step), key, uri, manifest))
        return committed, torn

    def _check(self, key: str, files: dict[str, int]) -> tuple[str | None, dict[str, Any]]:
        return check_folder(self.store, key, files)

    def list_committed(self) -> list[CheckpointRef]:
        """Committed checkpoints, oldest first."""
        return self._scan()[0]

    def list_torn(self) -> list[TornCheckpoint]:
        """Checkpoint folders that are not committed (interrupted or damaged), oldest first."""
        return self._scan()[1]

    def latest(self) -> CheckpointRef | None:
        """The newest committed checkpoint; torn ones newer than it are skipped with a warning."""
        committed, torn = self._scan()
        newest = committed[-1] if committed else None
        for t in torn:
            if newest is None or t.step > newest.step:
                log.warning("skipping torn checkpoint %s: %s", t.uri, t.reason)
        return newest

    def fetch(self, ref: CheckpointRef, local_dir: str | Path) -> Path:
        """Download `ref` into `local_dir` and verify every sha256; TornCheckpointError if not.

        A manifest naming a file outside the checkpoint ('..', absolute, backslash) is not
        damage but tampering: UnsafePathError, before anything is written.
        """
        dest = Path(local_dir)
        if dest.exists():
            shutil.rmtree(dest)
        problems = fetch_folder(self.store, ref.key, ref.manifest, dest)
        if problems:
            self.damaged.add(ref.step)
            raise TornCheckpointError(f"checkpoint {ref.uri} is damaged: " + "; ".join(problems))
        return dest

    def latest_verified(self, local_dir: str | Path) -> tuple[CheckpointRef, Path] | None:
        """Fetch the newest checkpoint that verifies, falling back past damaged ones."""
        committed, torn = self._scan()
        newest = committed[-1].step if committed else -1
        for t in torn:
            if t.step > newest:
                log.warning("skipping torn checkpoint %s: %s", t.uri, t.reason)
        for ref in reversed(committed):
            try:
                return ref, self.fetch(ref, local_dir)
            except TornCheckpointError as e:
                log.warning("skipping torn checkpoint %s: %s", ref.uri, e)
        return None
