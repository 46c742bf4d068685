"""What one reconcile sees: the FineTuneJob, its attempt's Job and pods, from the watch
cache (cache.py) when it can answer, else from the API with the miss counted."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from kubetune_api import constants as c

from .. import builders as b
from ..cache import CONTROLLER_UID_LABELS, Written, child_key, one
from ..informer import Store
from ..k8s import FINETUNEJOBS, JOBS, PODS, ForeignObject, KubeClient, owned_by


@dataclass
class Sources:
    """The scheduler's copy of the FineTuneJob and the informers' two stores (None: read
    the API)."""

    body: Mapping[str, Any] | None = None
    jobs: Store | None = None  # trimmed Jobs by child key (informer.py)
    pods: Store | None = None  # trimmed pods by child key


def _miss(memo: kopf.Memo, kind: str) -> None:
    memo.metrics.cache_misses.labels(kind).inc()


# Jobs whose status and children are being created at once (reconcile.py): enough to keep
# the --qps budget busy while each request waits for its answer, few enough that a job's
# own requests are not queued behind a whole burst's.
CREATING_AT_ONCE = 16


def creating(memo: kopf.Memo) -> asyncio.Semaphore:
    """Shared by every job's pass (setup.configure); a caller without it gets its own."""
    if memo.get("creating") is None:
        memo.creating = asyncio.Semaphore(CREATING_AT_ONCE)
    return memo.creating  # type: ignore[no-any-return]


def written(memo: kopf.Memo) -> Written:
    if memo.get("written") is None:
        memo.written = Written()
    return memo.written  # type: ignore[no-any-return]


async def finetunejob(memo: kopf.Memo, src: Sources, ns: str, name: str) -> dict[str, Any] | None:
    """The FineTuneJob: the scheduler's copy with the status we last wrote if the watch has
    not shown it yet; a GET only without a copy (a caller outside the scheduler)."""
    if src.body is None:
        _miss(memo, "finetunejob")
        return await memo.client.get(FINETUNEJOBS, ns, name)  # type: ignore[no-any-return]
    meta = dict(src.body.get("metadata") or {})
    return {
        "metadata": meta,
        "spec": src.body.get("spec") or {},
        "status": written(memo).fresh_status(ns, name, src.body),
    }


def pod_of(pod: Mapping[str, Any], job_uid: str) -> bool:
    """A pod belongs to a Job by the Job's uid, never by name or our labels alone (a pod
    left by an earlier FineTuneJob of the same name carries the same labels)."""
    if owned_by(dict(pod), job_uid):
        return True
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return any(labels.get(k) == job_uid for k in CONTROLLER_UID_LABELS)


def cached_job(src: Sources, ns: str, name: str, number: int) -> dict[str, Any] | None:
    """The attempt's Job as the Job store has it (None: not there, or no store)."""
    if src.jobs is None:
        return None
    key = child_key(ns, {c.LABEL_JOB: name, c.LABEL_ATTEMPT: str(number)})
    return one(src.jobs.get(key), b.job_name(name, number))


async def attempt(
    memo: kopf.Memo, src: Sources, ns: str, name: str, number: int, uid: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], str | None]:
    """The attempt's Job and its pods, or (None, [], conflict) if the Job is not ours."""
    client: KubeClient = memo.client
    jname = b.job_name(name, number)
    key = child_key(ns, {c.LABEL_JOB: name, c.LABEL_ATTEMPT: str(number)})
    job = pods = None
    if src.jobs is not None:
        job = one(src.jobs.get(key), jname)
        # Created by us a moment ago, its event not here yet? Our copy serves one look only
        # (it must not outlive a deletion the index would show).
        ours = written(memo).jobs.pop(key, None)
        job = job if job is not None else ours
        if job is not None:  # its pods' watch is as complete as its own
            pods = list(src.pods.get(key) or ()) if src.pods is not None else None
    if job is None:
        # Not in the cache: just created (its event is on the way), or a foreign Job with
        # that name (not ours, so not labelled for our watch): ask the API.
        _miss(memo, "job")
        job = await client.get(JOBS, ns, jname)
        if job is None:
            return None, [], None
    if not owned_by(job, uid):
        return None, [], str(ForeignObject("Job", ns, jname))
    if pods is None:
        _miss(memo, "pods")
        pods = await client.list(PODS, ns, {c.LABEL_JOB: name, c.LABEL_ATTEMPT: str(number)})
    job_uid = str(job["metadata"].get("uid") or "")
    return job, [p for p in pods if pod_of(p, job_uid)], None
