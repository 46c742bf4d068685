"""A job's children: is a name taken by a foreign object, create them (dependencies first),
delete an attempt's. Only objects carrying our uid as owner are ever deleted or adopted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from kubetune_api.constants import ConditionType as CT

from .. import builders as b
from ..cache import trim_job
from ..config import OperatorConfig
from ..decide import Plan
from ..k8s import (
    CONFIGMAPS,
    JOBS,
    NETWORKPOLICIES,
    SECRETS,
    SERVICES,
    ApiError,
    ForeignObject,
    KubeClient,
    Resource,
    owned_by,
)
from ..netpol import build_network_policy
from ..status import parse_time
from . import view


def _conflict_stored(status: dict[str, Any]) -> bool:
    return any(
        cond.get("type") == CT.CHILD_CONFLICT and cond.get("status") == "True"
        for cond in status.get("conditions") or ()
    )


async def foreign_child(
    memo: kopf.Memo,
    src: view.Sources,
    status: dict[str, Any],
    ns: str,
    name: str,
    uid: str,
    attempt: int,
    service: bool,
) -> str | None:
    """Before creating an attempt: is any of its children's names taken by a foreign object?
    (`service`: the attempt has a headless Service, i.e. more than one node.)

    Three GETs per creation would be most of a new job's requests (and with the --qps cap,
    of a burst's latency), so they are made only while a conflict is stored (is it gone?).
    Otherwise the Job store answers for a Job with our labels, and a create's 409 on an
    object we do not own raises ForeignObject (then the conflict is decided and stored)."""
    if not _conflict_stored(status):
        job = view.cached_job(src, ns, name, attempt)
        if job is not None and not owned_by(job, uid):
            return str(ForeignObject("Job", ns, b.job_name(name, attempt)))
        return None
    client: KubeClient = memo.client
    children = (
        (CONFIGMAPS, "ConfigMap", b.configmap_name(name)),
        *([(SERVICES, "Service", b.service_name(name, attempt))] if service else []),
        (JOBS, "Job", b.job_name(name, attempt)),
    )
    for res, kind, child in children:
        obj = await client.get(res, ns, child)
        if obj is not None and not owned_by(obj, uid):
            return str(ForeignObject(kind, ns, child))
    return None


class ChildRejected(Exception):
    """Creating a child got an answer no retry can change (ApiError.permanent)."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(str(error))


async def delete_attempt(client: KubeClient, ns: str, name: str, attempt: int, uid: str) -> None:
    # Background propagation: the Job goes now, its pods with the garbage collector.
    # Only our own: an object with the same name that another owner made is left alone.
    children = ((JOBS, b.job_name(name, attempt)), (SERVICES, b.service_name(name, attempt)))
    for res, child in children:
        obj = await client.get(res, ns, child)
        if obj is not None and owned_by(obj, uid):
            await client.delete(res, ns, child)


async def ensure_children(
    memo: kopf.Memo,
    plan: Plan,
    owner: b.Owner,
    accepted: dict[str, Any],
    credentials: dict[str, str],
) -> None:
    client: KubeClient = memo.client
    config: OperatorConfig = memo.config
    job, attempt, st = plan.job, plan.ensure_attempt, plan.status
    assert job is not None and attempt is not None
    remaining = None
    deadline = job.spec.run_policy.active_deadline_seconds
    if deadline:
        start = parse_time(st.start_time) or datetime.now(UTC)
        remaining = deadline - (datetime.now(UTC) - start).total_seconds()
    manifest = b.build_job(
        job, owner, attempt, image=config.image, deadline_remaining=remaining,
        url_credentials=bool(credentials), defaults=config.trainer_defaults,
    )  # fmt: skip
    # Dependencies first: the pods mount the ConfigMap and (on more than one node) resolve
    # pod 0 via the Service.
    # Named with our uid (see builders.credentials_secret_name), the Secret is never read.
    children: list[tuple[Resource, dict[str, Any], str | None]] = [
        # The NetworkPolicy before any pod exists: the rendezvous is never open to all.
        *(
            [(NETWORKPOLICIES, build_network_policy(job, owner, config.metrics_peers), owner.uid)]
            if config.network_policy
            else []
        ),
        (CONFIGMAPS, b.build_configmap(job, owner, accepted), owner.uid),
        *([(SECRETS, b.build_secret(owner, credentials), None)] if credentials else []),
        *(
            [(SERVICES, b.build_service(job, owner, attempt), owner.uid)]
            if b.needs_service(job)
            else []
        ),
        (JOBS, manifest, owner.uid),
    ]
    for res, obj, uid in children:
        try:
            created = await client.create_if_missing(res, obj, uid)
        except ApiError as exc:
            if exc.permanent:
                raise ChildRejected(exc) from exc
            raise
        if res is JOBS and created:
            key = (owner.namespace, owner.name, str(attempt))
            view.written(memo).jobs[key] = trim_job(created)
