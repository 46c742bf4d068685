"""Trainer errors, each tied to the exit code the operator reads (kubetune_api.ExitCode)."""

from __future__ import annotations

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
