"""Trainer errors, each tied to the exit code the operator reads (kubetune_api.ExitCode)."""

from __future__ import annotations

import errno
import os

from kubetune_api.constants import ExitCode


class TrainerError(Exception):
    """Base: a failure with a user-facing message and an exit code."""

    exit_code: int = ExitCode.INTERNAL


class ConfigError(TrainerError):
    """The spec cannot run here (e.g. fp16 on a CPU, unsloth without CUDA). Permanent."""

    exit_code = ExitCode.INVALID_SPEC


class BadDataError(TrainerError):
    """The dataset failed validation; the message lists `file:line: reason`. Permanent."""

    exit_code = ExitCode.BAD_DATA

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message)


class OutOfMemoryError(TrainerError):
    """The job does not fit (preflight or runtime OOM); message carries recommendations."""

    exit_code = ExitCode.OOM


class RetryableError(TrainerError):
    """Transient: a lost peer, a rendezvous timeout, storage unavailable."""

    exit_code = ExitCode.RETRYABLE


class PreemptedError(TrainerError):
    """SIGTERM received; a checkpoint was saved. Resume without counting a restart."""

    exit_code = ExitCode.PREEMPTED


class StorageWriteError(TrainerError):
    """No space left or no permission writing a file (checkpoint, adapter, staging).
    Permanent for the attempt: a retry would hit the same full or read-only volume."""

    exit_code = ExitCode.STORAGE


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
WRITE_ERRNOS = frozenset(_NO_SPACE | _NO_PERMISSION)


def write_error(exc: OSError, path: object, what: str = "") -> StorageWriteError:
    """One clear line for a failed write: what path, what happened, the fix."""
    where = f"{path} ({what})" if what else str(path)
    if exc.errno in _NO_SPACE:
        return StorageWriteError(
            f"no space left writing {where}: free space there or give it more (a "
            "larger volume, quota or emptyDir sizeLimit), or keep fewer checkpoints "
            "(training.keepLastCheckpoints); committed checkpoints are intact"
        )
    if exc.errno == errno.EROFS:
        return StorageWriteError(
            f"{where} is on a read-only filesystem: mount it writable or point "
            "output.uri (or --output) elsewhere; committed checkpoints are intact"
        )
    return StorageWriteError(
        f"permission denied writing {where}: let the trainer's user (uid "
        f"{os.getuid()}) write there or point output.uri (or --output) elsewhere; "
        "committed checkpoints are intact"
    )
