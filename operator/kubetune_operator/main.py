"""The kopf routing table: each handler is one docstring and one call into `handlers`."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kubetune_api import constants as c

from . import cache, kopf_fixes
from .handlers import delete, setup

# kopf's start-up wakes every waiting object worker per object listed (quadratic in the
# objects of indexed resources): fixed before kopf builds its toggle sets.
kopf_fixes.install()


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    logger: logging.Logger,
    child_jobs: kopf.Index,
    child_pods: kopf.Index,
    **_: Any,
) -> None:
    """Finalizer, annotation storage, watch timeouts; API client, metrics, the scheduler."""
    setup.configure(settings, memo, logger, (child_jobs, child_pods))


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    """Stop the scheduler, close the API session and stop the metrics server."""
    await setup.shutdown(memo)


@kopf.on.probe(id="scheduler")
def scheduler_probe(memo: kopf.Memo, **_: Any) -> dict[str, int]:
    """/healthz: the scheduler follows the jobs (job and in-flight pass counts)."""
    return setup.scheduler_health(memo)


@kopf.on.login()
async def login(**_: Any) -> kopf.ConnectionInfo:
    """Log in like the API client: service account, else $KUBECONFIG read now."""
    from .k8s import login as k8s_login

    return k8s_login()


@kopf.index("batch", "v1", "jobs", labels={c.LABEL_JOB: kopf.PRESENT})
def child_jobs(namespace: str, labels: Any, body: kopf.Body, **_: Any) -> Any:
    """Our Jobs by (namespace, FineTuneJob, attempt), trimmed to what observe() reads."""
    key = cache.child_key(namespace, labels)
    return {key: cache.trim_job(body)} if key else None


@kopf.index("v1", "pods", labels={c.LABEL_JOB: kopf.PRESENT})
def child_pods(namespace: str, labels: Any, body: kopf.Body, **_: Any) -> Any:
    """Our pods by (namespace, FineTuneJob, attempt), trimmed (no spec)."""
    key = cache.child_key(namespace, labels)
    return {key: cache.trim_pod(body)} if key else None


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def finetunejob_event(
    memo: kopf.Memo, event: kopf.RawEvent, namespace: str, name: str, body: kopf.Body, **_: Any
) -> None:
    """Create and follow the job (schedule.py): its copy kept current, due now when new, on a
    new spec generation (suspend, run policy, a rejected edit) and on its deletion."""
    setup.ftj_event(memo, event.get("type"), namespace, name, body)


@kopf.on.event("batch", "v1", "jobs", labels={c.LABEL_JOB: kopf.PRESENT})
async def job_event(memo: kopf.Memo, namespace: str, labels: Any, **_: Any) -> None:
    """A Job of ours changed: its FineTuneJob is due now."""
    setup.poke(memo, namespace, dict(labels))


@kopf.on.event("v1", "pods", labels={c.LABEL_JOB: kopf.PRESENT})
async def pod_event(memo: kopf.Memo, namespace: str, labels: Any, **_: Any) -> None:
    """A pod of ours changed: its FineTuneJob is due now."""
    setup.poke(memo, namespace, dict(labels))


@kopf.on.delete(c.GROUP, c.VERSION, c.PLURAL)
async def on_delete(
    memo: kopf.Memo, body: kopf.Body, namespace: str, name: str, logger: logging.Logger, **_: Any
) -> None:
    """Behind our finalizer: Job and pods gone, then the artifacts' cleanup policy."""
    await delete.on_delete(memo, body, namespace, name, logger)
