"""What every backend returns: a job's ID, phase and details, and the errors it raises.

A job ID is `<namespace>/<name>` on every backend: the FineTuneJob's own key on a cluster,
and the same key in the local queue (one active job per key, as in a namespace).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "Pending", "Running", "Succeeded", "Failed", "Cancelled",
)  # fmt: skip
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})
PHASES = (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED)
_SEGMENT = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class JobsError(Exception):
    """A refusal with a message for the user (unknown ID, bad spec, queue problem...)."""

    exit_code = 1


class UnknownJobError(JobsError):
    pass


class InvalidJobError(JobsError):
    """The spec does not validate: nothing was queued or created."""

    exit_code = 64


@dataclass
class JobInfo:
    id: str
    phase: str
    backend: str
    reason: str | None = None
    message: str | None = None
    retryable: bool = False
    attempt: int = 1
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    run_uri: str | None = None
    step: int | None = None
    max_steps: int | None = None
    checkpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobInfo:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def split_id(job_id: str) -> tuple[str, str]:
    """'team/my-job' -> ('team', 'my-job'); anything else is a clear refusal."""
    ns, sep, name = job_id.partition("/")
    if not sep or not _SEGMENT.match(ns) or not _SEGMENT.match(name):
        raise UnknownJobError(
            f"{job_id!r} is not a job ID: IDs look like <namespace>/<name>, "
            "as printed by `kubetune submit` and `kubetune jobs list`"
        )
    return ns, name
