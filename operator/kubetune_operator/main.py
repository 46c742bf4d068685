"""The kopf routing table: each handler is one docstring and one call into `handlers`."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kubetune_api import constants as c

from .handlers import delete, setup


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    logger: logging.Logger,
    **_: Any,
) -> None:
    """Finalizer, annotation storage, watch timeouts; API client, metrics, the informers of
    our Jobs and pods, the scheduler."""
    setup.configure(settings, memo, logger)


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


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def finetunejob_event(
    memo: kopf.Memo, event: kopf.RawEvent, namespace: str, name: str, body: kopf.Body, **_: Any
) -> None:
    """Create and follow the job (schedule.py): its copy kept current, due now when new, on a
    new spec generation (suspend, run policy, a rejected edit) and on its deletion."""
    setup.ftj_event(memo, event.get("type"), namespace, name, body)


@kopf.on.delete(c.GROUP, c.VERSION, c.PLURAL)
async def on_delete(
    memo: kopf.Memo, body: kopf.Body, namespace: str, name: str, logger: logging.Logger, **_: Any
) -> None:
    """Behind our finalizer: Job and pods gone, then the artifacts' cleanup policy."""
    await delete.on_delete(memo, body, namespace, name, logger)
