"""Pure builders: a FineTuneJob (+ metadata) -> the manifests of its children.

No API calls here: every function takes the parsed spec and an `Owner` and returns a
plain dict, so the manifests are testable without a cluster. Names are deterministic
(`<name>-a<attempt>` for the per-attempt Job and Service, `<name>-spec` for the
ConfigMap shared by all attempts) so creating them again is a no-op (409).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from kubetune_api import constants as c
from kubetune_api.spec import FineTuneJob
from kubetune_api.trainer_defaults import TrainerDefaults
from kubetune_api.uris import strip_spec_credentials

from . import DEFAULT_IMAGE
from . import pod_settings as ps

# No platform settings: the pods as kubetune builds them on its own.
NO_DEFAULTS = TrainerDefaults()

CONTAINER_NAME = "trainer"
SPEC_VOLUME = "spec"
CACHE_DIR = "/cache"
MANAGED_BY = "kubetune-operator"
# On our ConfigMap: the spec as written when the job was accepted (immutable fields).
ACCEPTED_SPEC = f"{c.ANNOTATION_PREFIX}/accepted-spec"
# Seconds between SIGTERM and SIGKILL: the trainer saves a checkpoint on SIGTERM (preemption)
# and exits 76; a large adapter + optimizer state to S3 needs more than the 30 s default.
TERMINATION_GRACE_SECONDS = 120
# A fixed non-root identity: runAsNonRoot alone fails on images whose USER is a name.
RUN_AS_USER = 1000
# Node-disk bounds of the writable volumes (the root filesystem is read-only). The spec has
# no disk field yet, so these are defaults sized for the largest runs kubetune targets;
# past them the kubelet evicts the pod (a retryable failure) instead of filling the node.
# /cache (KUBETUNE_CACHE, HF_HOME): the base model download or S3 copy, its converted /
# quantized form, the tokenized dataset, and each checkpoint staged before upload. A 70B
# model in bf16 is ~140 GB; 13B and smaller, well under 50 GB.
CACHE_SIZE_LIMIT = "200Gi"
# /tmp (HOME): scratch only (data fetched before validation, adapter read-back, launcher).
TMP_SIZE_LIMIT = "10Gi"
# What the scheduler reserves on the node for both: a 7B-13B run with room for the
# dataset and a staged checkpoint. The volumes may grow past it up to their sizeLimit.
EPHEMERAL_STORAGE_REQUEST = "50Gi"


@dataclass(frozen=True)
class Owner:
    """What the builders need from the FineTuneJob's metadata (ownerReferences, names)."""

    name: str
    namespace: str
    uid: str


def job_name(name: str, attempt: int) -> str:
    return f"{name}-a{attempt}"


def service_name(name: str, attempt: int) -> str:
    # One headless Service per attempt: pods of a dying attempt never join the next rendezvous.
    return job_name(name, attempt)


def needs_service(job: FineTuneJob) -> bool:
    """Only a multi-node attempt has a headless Service: its ranks dial pod 0 by DNS name.
    One node's ranks meet on 127.0.0.1 (the trainer's default without KUBETUNE_MASTER_ADDR)
    and the operator and the PodMonitor scrape the pod's own IP, so a Service would be one
    create per job (a quarter of a new job's capped requests) that nothing resolves."""
    return job.spec.distributed.nodes > 1


def configmap_name(name: str) -> str:
    return f"{name}-spec"


def credentials_secret_name(name: str, uid: str) -> str:
    """The Secret with the credentials the spec's URLs carried. The uid in its name: the
    operator may create Secrets but never read them, so it cannot check an existing one's
    owner; a name no earlier or other object can have taken is the check instead."""
    return f"{name}-url-credentials-{uid[:8]}"


def owner_reference(owner: Owner) -> dict[str, Any]:
    """Like kopf.adopt(): children are garbage-collected with the FineTuneJob."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(owner: Owner, attempt: int | None = None, component: str = "trainer") -> dict[str, str]:
    out = {
        c.LABEL_NAME: "kubetune",
        c.LABEL_INSTANCE: owner.name,
        c.LABEL_COMPONENT: component,
        c.LABEL_MANAGED_BY: MANAGED_BY,
        c.LABEL_JOB: owner.name,
    }
    if attempt is not None:
        out[c.LABEL_ATTEMPT] = str(attempt)
    return out


def selector(owner: Owner, attempt: int) -> dict[str, str]:
    return {c.LABEL_JOB: owner.name, c.LABEL_ATTEMPT: str(attempt)}


def _meta(owner: Owner, name: str, lbls: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": lbls,
        "ownerReferences": [owner_reference(owner)],
    }


def build_configmap(job: FineTuneJob, owner: Owner, accepted: dict[str, Any]) -> dict[str, Any]:
    """The resolved FineTuneJob (defaults filled in) as JSON, read by the trainer's launcher.

    The spec as the user wrote it when the job was accepted rides along as an annotation:
    later edits are compared with it, and keeping it here costs no extra API write.
    """
    manifest = job.to_manifest()
    manifest["metadata"] = {"name": owner.name, "namespace": owner.namespace}
    # Never a password: URLs go without their user:password@ (build_secret holds those).
    manifest["spec"] = strip_spec_credentials(manifest["spec"])[0]
    meta = _meta(owner, configmap_name(owner.name), labels(owner, component="spec"))
    accepted = strip_spec_credentials(accepted)[0]
    compact = json.dumps(accepted, sort_keys=True, separators=(",", ":"))
    meta["annotations"] = {ACCEPTED_SPEC: compact}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {c.SPEC_FILE_NAME: json.dumps(manifest, indent=2, sort_keys=True)},
    }


def build_secret(owner: Owner, credentials: dict[str, str]) -> dict[str, Any]:
    """The credentials taken out of the spec's URLs (kubetune_api.uris.URL_CREDENTIAL_FIELDS),
    as environment variables for the trainer (envFrom); owned, so it goes with the job."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(
            owner,
            credentials_secret_name(owner.name, owner.uid),
            labels(owner, component="credentials"),
        ),
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(credentials.items())},
    }


def accepted_spec(configmap: dict[str, Any] | None, owner_uid: str) -> dict[str, Any] | None:
    """The accepted spec kept on our ConfigMap; None if there is none for this very object."""
    if configmap is None:
        return None
    meta = configmap.get("metadata") or {}
    if owner_uid not in {o.get("uid") for o in meta.get("ownerReferences") or []}:
        return None  # left by an earlier FineTuneJob of the same name
    raw = (meta.get("annotations") or {}).get(ACCEPTED_SPEC)
    try:
        spec = json.loads(raw) if raw else None
    except ValueError:
        return None  # edited by hand into something unreadable: as if there were none
    return spec if isinstance(spec, dict) else None


def build_service(job: FineTuneJob, owner: Owner, attempt: int) -> dict[str, Any]:
    """Headless Service: stable DNS `<job>-<index>.<service>` for the rendezvous at pod 0."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, service_name(owner.name, attempt), labels(owner, attempt)),
        "spec": {
            "clusterIP": "None",
            # Ranks resolve pod 0 before it is Ready (readiness means nothing to torchrun).
            "publishNotReadyAddresses": True,
            "selector": selector(owner, attempt),
            "ports": [
                {"name": "rdzv", "port": job.spec.distributed.master_port, "protocol": "TCP"},
                {"name": "metrics", "port": job.spec.metrics.port, "protocol": "TCP"},
            ],
        },
    }


def _env(job: FineTuneJob, owner: Owner, attempt: int) -> list[dict[str, Any]]:
    spec = job.spec
    jname = job_name(owner.name, attempt)
    values: list[tuple[str, str]] = [
        (c.Env.SPEC_FILE, f"{c.SPEC_MOUNT_DIR}/{c.SPEC_FILE_NAME}"),
        (c.Env.NAMESPACE, owner.namespace),
        (c.Env.JOB_NAME, owner.name),
        (c.Env.JOB_UID, owner.uid),
        (c.Env.ATTEMPT, str(attempt)),
        (c.Env.NNODES, str(spec.distributed.nodes)),
        (c.Env.NPROC_PER_NODE, str(spec.distributed.processes_per_node)),
        # Indexed Job pods get the hostname <job>-<index>; with `subdomain` it resolves.
        *(
            [(c.Env.MASTER_ADDR, f"{jname}-0.{service_name(owner.name, attempt)}")]
            if needs_service(job)
            else []
        ),
        (c.Env.MASTER_PORT, str(spec.distributed.master_port)),
        (c.Env.RDZV_TIMEOUT, str(spec.distributed.rendezvous_timeout_seconds)),
        (c.Env.METRICS_PORT, str(spec.metrics.port)),
        (c.Env.TERMINATION_LOG, c.TERMINATION_LOG_PATH),
        # Read-only root filesystem: every cache goes to the writable emptyDir.
        ("HOME", "/tmp"),
        ("XDG_CACHE_HOME", CACHE_DIR),
        (c.Env.CACHE, f"{CACHE_DIR}/kubetune"),  # set here too, not only by the image's ENV
        ("HF_HOME", f"{CACHE_DIR}/huggingface"),
        ("TRITON_CACHE_DIR", f"{CACHE_DIR}/triton"),
    ]
    if spec.output.s3_endpoint:
        values.append((c.Env.S3_ENDPOINT, spec.output.s3_endpoint))
    return [{"name": k, "value": v} for k, v in values]


def _resources(job: FineTuneJob, defaults: TrainerDefaults) -> dict[str, Any]:
    res = job.spec.resources
    requests: dict[str, str] = {
        "cpu": res.cpu,
        "memory": res.memory,
        "ephemeral-storage": EPHEMERAL_STORAGE_REQUEST,
    }
    limits: dict[str, str] = {"memory": res.memory}  # no CPU limit: throttling hurts dataloaders
    extended = ps.gpu_resources(job, defaults)  # the cluster's GPU resource name
    requests.update(extended)
    limits.update(extended)
    return {"requests": requests, "limits": limits}


def _container(
    job: FineTuneJob,
    owner: Owner,
    attempt: int,
    image: str,
    url_credentials: bool,
    defaults: TrainerDefaults,
) -> dict[str, Any]:
    spec = job.spec
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.resources.image or image,
        "imagePullPolicy": defaults.image_pull_policy,
        # The launcher builds `torchrun --nnodes ... --node-rank $JOB_COMPLETION_INDEX` from env.
        # `args`, not `command`: the image's ENTRYPOINT (tini -- kubetune) stays PID 1, reaping
        # torchrun's workers and forwarding the kubelet's SIGTERM for the checkpoint-and-exit.
        "args": ["launch"],
        # kubetune's own first; the names the platform and the job may use never clash.
        "env": _env(job, owner, attempt) + ps.env(job, defaults),
        "resources": _resources(job, defaults),
        "ports": [
            {"name": "rdzv", "containerPort": spec.distributed.master_port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": spec.metrics.port, "protocol": "TCP"},
        ],
        "volumeMounts": [
            {"name": SPEC_VOLUME, "mountPath": c.SPEC_MOUNT_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "cache", "mountPath": CACHE_DIR},
            *ps.volume_mounts(defaults),
        ],
        "terminationMessagePath": c.TERMINATION_LOG_PATH,
        # The trainer writes a one-line JSON summary; on a crash the log tail is the message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    # Later sources win a key: platform, job, then kubetune's own credentials.
    env_from = ps.env_from(job, defaults)
    if spec.output.credentials_secret:
        # By reference only: the Secret's values never pass through the spec or the operator.
        env_from.append({"secretRef": {"name": spec.output.credentials_secret}})
    if url_credentials:
        secret = credentials_secret_name(owner.name, owner.uid)
        env_from.append({"secretRef": {"name": secret}})
    if env_from:
        container["envFrom"] = env_from
    return container


def build_pod_template(
    job: FineTuneJob,
    owner: Owner,
    attempt: int,
    image: str = DEFAULT_IMAGE,
    url_credentials: bool = False,
    defaults: TrainerDefaults = NO_DEFAULTS,
) -> dict[str, Any]:
    res = job.spec.resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # a failed rank fails the attempt; the operator retries
        "automountServiceAccountToken": False,  # the trainer never talks to the API
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(job, owner, attempt, image, url_credentials, defaults)],
        "volumes": [
            {
                "name": SPEC_VOLUME,
                "configMap": {"name": configmap_name(owner.name), "defaultMode": 0o444},
            },
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": res.shm_size}},
            {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
            ps.cache_volume(defaults, CACHE_SIZE_LIMIT),
            *ps.volumes(defaults),
        ],
        **ps.placement(job, defaults, selector(owner, attempt)),
    }
    if needs_service(job):  # the pods' DNS names <job>-<index>.<service>
        pod_spec["subdomain"] = service_name(owner.name, attempt)
    meta: dict[str, Any] = {"labels": {**ps.labels(job, defaults), **labels(owner, attempt)}}
    extra_annotations = ps.annotations(job, defaults)
    if extra_annotations:
        meta["annotations"] = extra_annotations
    return {"metadata": meta, "spec": pod_spec}


# The Job fails on any pod failure either way (backoffLimit 0). These rules only make it say
# why in its Failed condition (reason PodFailurePolicy), so the operator can still classify
# the failure once the pod itself is gone (an evicted pod is deleted after it stops).
# Permanent exit codes come first: they win over a disruption, as in observe.py.
POD_FAILURE_POLICY: dict[str, Any] = {
    "rules": [
        {
            "action": "FailJob",
            "onExitCodes": {
                "containerName": CONTAINER_NAME,
                "operator": "In",
                "values": list(c.ExitCode.PERMANENT),
            },
        },
        {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
}


def build_job(
    job: FineTuneJob,
    owner: Owner,
    attempt: int,
    *,
    image: str = DEFAULT_IMAGE,
    deadline_remaining: int | None = None,
    url_credentials: bool = False,
    defaults: TrainerDefaults = NO_DEFAULTS,
) -> dict[str, Any]:
    """The Indexed Job of one attempt: one pod per node, no Kubernetes-level retries.

    `url_credentials`: the spec's URLs carried credentials, now in build_secret's Secret.
    `defaults`: the platform's trainer defaults (pod_settings.py merges the job's over them)."""
    nodes = job.spec.distributed.nodes
    rp = job.spec.run_policy
    job_labels = {**ps.labels(job, defaults), **labels(owner, attempt)}
    if rp.queue_name:
        job_labels[c.LABEL_KUEUE_QUEUE] = rp.queue_name
    priority = job.metadata.labels.get(c.LABEL_KUEUE_PRIORITY)
    if priority:  # Kueue orders and preempts workloads by the Job's priority-class label
        job_labels[c.LABEL_KUEUE_PRIORITY] = priority
    spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": nodes,
        "parallelism": nodes,
        # The operator owns retries: it classifies the failure, then resumes from a checkpoint.
        "backoffLimit": 0,
        # Kueue admits a suspended Job by unsuspending it; without a queue, start at once.
        "suspend": bool(rp.queue_name),
        "template": build_pod_template(job, owner, attempt, image, url_credentials, defaults),
        "podFailurePolicy": POD_FAILURE_POLICY,
    }
    if deadline_remaining is not None:
        spec["activeDeadlineSeconds"] = max(1, int(deadline_remaining))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(owner, job_name(owner.name, attempt), job_labels),
        "spec": spec,
    }
