"""Pure: the platform's trainer defaults (kubetune_api.trainer_defaults) refined by the
job's spec.pod and spec.resources, as pieces of the trainer pod that builders.py assembles.

Precedence, everywhere: kubetune's own settings, then the job's, then the platform's.
kubetune's env names, labels, volumes and paths cannot be set by either (the models
refuse them), so the merge never has to choose against kubetune.
"""

from __future__ import annotations

from typing import Any

from kubetune_api.pod import EnvFromSource, EnvVar
from kubetune_api.spec import FineTuneJob
from kubetune_api.trainer_defaults import TrainerDefaults

CACHE_VOLUME = "cache"


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def env(job: FineTuneJob, defaults: TrainerDefaults) -> list[dict[str, Any]]:
    """The platform's env with the job's merged in by name (the job's value wins, in the
    platform's position); the job's other variables after them."""
    by_name: dict[str, EnvVar] = {v.name: v for v in defaults.env}
    by_name.update({v.name: v for v in job.spec.pod.env})
    return [_dump(v) for v in by_name.values()]


def env_from(job: FineTuneJob, defaults: TrainerDefaults) -> list[dict[str, Any]]:
    """Platform sources, then the job's: for a key in both, the later (the job's) wins."""
    sources: list[EnvFromSource] = [*defaults.env_from, *job.spec.pod.env_from]
    return [_dump(s) for s in sources]


def gpu_resources(job: FineTuneJob, defaults: TrainerDefaults) -> dict[str, str]:
    """Extended resources per pod (requests = limits): the GPUs under the cluster's resource
    name (nvidia.com/gpu, a MIG profile, amd.com/gpu) and, for GPU pods, extraResources."""
    gpus = job.spec.resources.gpus_per_node
    if gpus <= 0:
        return {}
    return {**defaults.extra_resources, defaults.gpu_resource_name: str(gpus)}


def labels(job: FineTuneJob, defaults: TrainerDefaults) -> dict[str, str]:
    """Extra labels for the attempt's Job and pods (the caller puts kubetune's on top)."""
    return {**defaults.labels, **job.spec.pod.labels}


def annotations(job: FineTuneJob, defaults: TrainerDefaults) -> dict[str, str]:
    return {**defaults.annotations, **job.spec.pod.annotations}


def cache_volume(defaults: TrainerDefaults, size_limit: str) -> dict[str, Any]:
    """/cache: the platform's volume (a PVC keeps the downloaded and quantized base across
    attempts and jobs), else an emptyDir that goes with the pod."""
    if defaults.cache is None:
        return {"name": CACHE_VOLUME, "emptyDir": {"sizeLimit": size_limit}}
    return {"name": CACHE_VOLUME, **_dump(defaults.cache)}


def volumes(defaults: TrainerDefaults) -> list[dict[str, Any]]:
    return [_dump(v) for v in defaults.volumes]


def volume_mounts(defaults: TrainerDefaults) -> list[dict[str, Any]]:
    return [_dump(m) for m in defaults.volume_mounts]


def placement(
    job: FineTuneJob, defaults: TrainerDefaults, own_pods: dict[str, str]
) -> dict[str, Any]:
    """Pod-spec keys for scheduling and identity; `own_pods` selects this attempt's pods (the
    default labelSelector of a topology spread constraint)."""
    res = job.spec.resources
    out: dict[str, Any] = {}
    node_selector = {**defaults.node_selector, **res.node_selector}
    if res.gpu_type:
        node_selector[defaults.gpu_type_label] = res.gpu_type
    if node_selector:
        out["nodeSelector"] = node_selector
    tolerations: list[dict[str, Any]] = []
    for t in (*defaults.tolerations, *res.tolerations):
        if _dump(t) not in tolerations:
            tolerations.append(_dump(t))
    if tolerations:
        out["tolerations"] = tolerations
    if defaults.affinity is not None:
        out["affinity"] = _dump(defaults.affinity)
    spread = []
    for constraint in defaults.topology_spread_constraints:
        item = _dump(constraint)
        if "labelSelector" not in item and "matchLabelKeys" not in item:
            item["labelSelector"] = {"matchLabels": dict(own_pods)}
        spread.append(item)
    if spread:
        out["topologySpreadConstraints"] = spread
    priority = res.priority_class_name or defaults.priority_class_name
    if priority:
        out["priorityClassName"] = priority
    account = res.service_account_name or defaults.service_account_name
    if account:
        out["serviceAccountName"] = account
    if defaults.image_pull_secrets:
        out["imagePullSecrets"] = [_dump(s) for s in defaults.image_pull_secrets]
    return out
