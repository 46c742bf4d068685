"""`Client`: submit a FineTuneJob, get its ID, poll it, read its logs and metrics, cancel it.

    from kubetune_trainer.jobs import Client          # re-exported as `kubetune.Client`
    client = Client()                                  # local queue; or backend="kubernetes"
    ref = client.submit("job.yaml", **{"training.maxSteps": 10})
    info = ref.wait(timeout=600)                       # JobInfo(phase="Succeeded", ...)
    for line in ref.logs(follow=True): print(line, end="")

The same verbs and the same `<namespace>/<name>` IDs on every backend: "local" (this
machine's queue and worker), "kubernetes" (a FineTuneJob through the API server), and
"http" (a `kubetune serve-api` in front of a local queue).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import FINISHED, SUCCEEDED, JobInfo, JobsError

BACKENDS = ("local", "kubernetes", "http")


class WaitTimeoutError(JobsError):
    exit_code = 2


def make_backend(backend: str, **options: Any) -> Any:
    if backend == "local":
        from .local import LocalBackend

        return LocalBackend(slots=options.get("slots"))
    if backend == "kubernetes":
        from .kube import KubeBackend

        return KubeBackend(namespace=options.get("namespace"), kubeconfig=options.get("kubeconfig"))
    if backend == "http":
        from .http_client import HttpBackend

        return HttpBackend(options.get("url"), token=options.get("token"))
    raise JobsError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")


def overrides_from(kwargs: dict[str, Any]) -> list[str]:
    """{'training.maxSteps': 5, 'training__seed': 1} -> --set items (`__` means `.`)."""
    import json

    return [f"{k.replace('__', '.')}={json.dumps(v) if not isinstance(v, str) else v}"
            for k, v in kwargs.items()]  # fmt: skip


@dataclass
class JobRef:
    id: str
    client: Client

    def get(self) -> JobInfo:
        return self.client.get(self.id)

    def wait(self, until: Iterable[str] = (SUCCEEDED,), timeout: float | None = None) -> JobInfo:
        return self.client.wait(self.id, until=until, timeout=timeout)

    def logs(self, follow: bool = False, rank: int = 0) -> Iterator[str]:
        return self.client.logs(self.id, follow=follow, rank=rank)

    def metrics(self) -> dict[str, Any]:
        return self.client.metrics(self.id)

    def cancel(self) -> JobInfo:
        return self.client.cancel(self.id)


class Client:
    def __init__(self, backend: str = "local", **options: Any) -> None:
        self.backend = make_backend(backend, **options)

    def submit(self, spec_or_path: str | Path | dict[str, Any], **overrides: Any) -> JobRef:
        return JobRef(self.backend.submit(spec_or_path, overrides_from(overrides)), self)

    def get(self, job_id: str) -> JobInfo:
        return self.backend.get(job_id)

    def list(self) -> list[JobInfo]:
        return self.backend.list()

    def logs(self, job_id: str, follow: bool = False, rank: int = 0) -> Iterator[str]:
        return self.backend.logs(job_id, follow=follow, rank=rank)

    def metrics(self, job_id: str) -> dict[str, Any]:
        return self.backend.metrics(job_id)

    def cancel(self, job_id: str) -> JobInfo:
        return self.backend.cancel(job_id)

    def wait(
        self, job_id: str, until: Iterable[str] = (SUCCEEDED,), timeout: float | None = None,
        poll: float = 1.0,
    ) -> JobInfo:  # fmt: skip
        """Poll until the job reaches a phase in `until` or finishes; the last JobInfo."""
        wanted = set(until)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self.get(job_id)
            if info.phase in wanted or info.phase in FINISHED:
                return info
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeoutError(
                    f"job {job_id} is still {info.phase} after {timeout:g} s "
                    "(it keeps running; wait again or cancel it)"
                )
            time.sleep(poll)
