"""Deletion behind our finalizer: the Job and its pods are gone, then artifacts by policy.

Pods are never deleted by the operator (its RBAC on pods is read-only): deleting a Job
with propagationPolicy Background hands its pods to the garbage collector, and the
handler lists them until they are gone (a pod takes its terminationGracePeriod to stop,
long enough for the trainer's last checkpoint), retrying every few seconds meanwhile.

S3 cleanup (spec.output.cleanupPolicy: delete) uses the OPERATOR's own credentials
(its environment / IRSA), never the user's Secret: reading tenants' Secrets would
need `get secrets` in every namespace. Without boto3 or credentials the artifacts
are kept and a Warning Event says so (deleting data is never done half-way silently).
Those credentials are signed into every request, so cleanup only ever talks to AWS S3
itself (no s3Endpoint) or an endpoint the operator's configuration allows
(--s3-endpoint-allow): any other s3Endpoint a job names (a server of its author's, an
internal address) gets no request at all; its artifacts are kept, with a Warning Event
and a condition saying why.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kubetune_api import constants as c
from kubetune_api.constants import ConditionType as CT
from kubetune_api.constants import Reason
from kubetune_api.status import Condition
from kubetune_api.uris import is_remote, run_prefix

from ..config import OperatorConfig, endpoint_allowed
from ..k8s import CONFIGMAPS, FINETUNEJOBS, JOBS, PODS, SERVICES, KubeClient, Resource, owned_by
from .reconcile import accepted_spec

# Seconds between looks at the pods still terminating after their Job was deleted.
POD_GONE_POLL = 2


async def on_delete(
    memo: kopf.Memo, body: kopf.Body, namespace: str, name: str, logger: logging.Logger
) -> None:
    client: KubeClient = memo.client
    sel = {c.LABEL_JOB: name}
    # Read before the ConfigMap goes: cleanup follows the policy the job was accepted with.
    accepted = await accepted_spec(memo, client, namespace, name, body.metadata.uid or "")
    spec: dict[str, Any] = accepted if accepted is not None else dict(body.spec)
    uid = body.metadata.uid or ""
    # The pods go with their Job (garbage collector); the loop below waits for them.
    # Only our own children: an object that merely carries our labels is not ours to delete.
    for job in await _owned(client, JOBS, namespace, sel, uid):
        await client.delete(JOBS, namespace, job["metadata"]["name"], propagation="Background")
    for svc in await _owned(client, SERVICES, namespace, sel, uid):
        await client.delete(SERVICES, namespace, svc["metadata"]["name"])
    for cm in await _owned(client, CONFIGMAPS, namespace, sel, uid):
        await client.delete(CONFIGMAPS, namespace, cm["metadata"]["name"])
    # A deleted FineTuneJob leaves no pod behind: the finalizer stays until they are gone.
    # Pods without a Job (someone deleted it with propagation Orphan) have no collector
    # to wait for and the operator may not delete pods: they are named once and left.
    pods = await client.list(PODS, namespace, sel)
    orphans = [p for p in pods if not _owned_by_job(p)]
    left = [p for p in pods if _owned_by_job(p)] + await _owned(client, JOBS, namespace, sel, uid)
    if orphans and not left:
        names = ", ".join(p["metadata"]["name"] for p in orphans)
        message = f"pods {names} have no Job (orphaned by hand); delete them yourself"
        kopf.warn(body, reason="OrphanedPods", message=message)
    if left:
        names = ", ".join(o["metadata"]["name"] for o in left)
        raise kopf.TemporaryError(f"waiting for {names} to go", delay=POD_GONE_POLL)
    memo.metrics.set_phase(namespace, name, None)
    config: OperatorConfig = memo.config
    output = spec.get("output") or {}
    endpoint = output.get("s3Endpoint")
    if output.get("cleanupPolicy") == "delete" and not endpoint_allowed(
        endpoint, config.s3_endpoint_allow
    ):
        await _deny_cleanup(client, body, str(output.get("uri") or ""), str(endpoint))
        return
    _cleanup_artifacts(body, spec, namespace, name, logger)


async def _deny_cleanup(client: KubeClient, body: kopf.Body, uri: str, endpoint: str) -> None:
    message = (
        f"cleanupPolicy delete: s3Endpoint {endpoint} is not in the operator's "
        f"--s3-endpoint-allow list, so no request was sent there and the artifacts under "
        f"{uri} are kept; delete them yourself, or ask the cluster admin to allow the endpoint"
    )
    kopf.warn(body, reason=Reason.CLEANUP_DENIED, message=message)
    cond = Condition(type=CT.CLEANUP, status="False", reason=Reason.CLEANUP_DENIED,
                     message=message, observed_generation=body.metadata.get("generation") or 0
                     ).model_dump(by_alias=True)  # fmt: skip
    # Merge-patch replaces the list: keep the other conditions as they are.
    others = [x for x in (body.status or {}).get("conditions") or [] if x.get("type") != CT.CLEANUP]
    ns, name = body.metadata.namespace or "", body.metadata.name or ""
    await client.patch(
        FINETUNEJOBS, ns, name, {"status": {"conditions": [*others, cond]}}, "status"
    )


async def _owned(
    client: KubeClient, res: Resource, ns: str, sel: dict[str, str], uid: str
) -> list[dict[str, Any]]:
    return [o for o in await client.list(res, ns, sel) if owned_by(o, uid)]


def _owned_by_job(pod: dict[str, Any]) -> bool:
    refs = pod["metadata"].get("ownerReferences") or []
    return any(r.get("kind") == "Job" for r in refs)


def _cleanup_artifacts(
    body: kopf.Body, spec: dict[str, Any], ns: str, name: str, logger: logging.Logger
) -> None:
    output = spec.get("output") or {}
    if output.get("cleanupPolicy") != "delete":
        return
    uri = str(output.get("uri") or "")
    if not is_remote(uri):
        kopf.warn(body, reason="CleanupSkipped",
                  message=f"cleanupPolicy delete applies to s3:// outputs; {uri} kept")  # fmt: skip
        return
    prefix = run_prefix(uri, ns, name) + "/"
    try:
        deleted = delete_s3_prefix(prefix, output.get("s3Endpoint"))
    except Exception as exc:  # boto3/botocore raise many types; never block the deletion
        kopf.warn(body, reason="CleanupFailed", message=f"artifacts kept at {prefix}: {exc}")
        logger.warning(f"could not delete {prefix}: {exc}")
        return
    kopf.info(body, reason="CleanupDone", message=f"deleted {deleted} objects under {prefix}")


def delete_s3_prefix(prefix: str, endpoint: str | None) -> int:
    """Delete every object under s3://bucket/prefix/ (batches of 1000). Returns the count."""
    import boto3  # optional dependency of the operator image: imported only when needed

    bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
    # A fresh session each time: boto3's default session caches credentials forever,
    # and rotated ones (IRSA, mounted files) must be picked up.
    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise RuntimeError("the operator has no S3 credentials")
    s3 = session.client("s3", endpoint_url=endpoint)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            count += len(keys)
    return count
