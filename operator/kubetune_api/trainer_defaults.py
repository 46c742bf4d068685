"""The platform's trainer-pod defaults: set once per cluster (the chart's `trainerDefaults`
values, a ConfigMap the operator reads at start with `--trainer-defaults FILE`), refined
per job by spec.pod. One model, so a bad setting stops the operator at start with the
field named, not a job later."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from ._base import SpecModel
from .errors import from_validation_error
from .kube_names import (
    check_dns_label,
    check_labels,
    check_quantity,
    qualified_name_problem,
)
from .loader import read_documents
from .pod import EnvFromSource, EnvVar, ExtraMetadata, NameRef, check_env_list
from .safe_yaml import YamlLimitError, shorten
from .spec_infra import Toleration

# Volumes and paths the operator's builders own in every trainer pod.
BUILTIN_VOLUMES: Final = frozenset({"spec", "dshm", "tmp", "cache"})
# kubetune's writable and mounted paths (builders.py), and the kernel's: a platform volume
# mounted on, above or inside one of them would hide what the trainer writes or reads.
RESERVED_PATHS: Final = (
    "/tmp", "/cache", "/dev", "/etc/kubetune", "/proc", "/sys", "/var/run/secrets",
)  # fmt: skip
_STANDARD_RESOURCES: Final = frozenset({"cpu", "memory", "ephemeral-storage", "pods"})


def _resource_name(value: str, what: str) -> str:
    """An extended resource name such as nvidia.com/gpu or nvidia.com/mig-3g.40gb."""
    problem = qualified_name_problem(value) if "/" in value else "it needs a vendor prefix"
    if problem or value in _STANDARD_RESOURCES or value.startswith("kubernetes.io/"):
        raise ValueError(
            f"{what} {value[:100]!r} is not an extended resource name ({problem or 'reserved'}): "
            "use the device plugin's, e.g. nvidia.com/gpu, nvidia.com/mig-3g.40gb, amd.com/gpu"
        )
    return value


class PvcSource(SpecModel):
    claim_name: str = Field(description="PersistentVolumeClaim in the job's namespace.")
    read_only: bool = Field(default=False, description="Mount read-only.")

    @field_validator("claim_name")
    @classmethod
    def _claim(cls, v: str) -> str:
        return check_dns_label(v, "claimName")


class NfsSource(SpecModel):
    server: str = Field(min_length=1, max_length=253, description="NFS server.")
    path: str = Field(min_length=1, description="Exported path.")
    read_only: bool = Field(default=False, description="Mount read-only.")


class EmptyDirSource(SpecModel):
    medium: Literal["Memory"] | None = Field(
        default=None, description="Unset: the node's disk; Memory: a tmpfs."
    )
    size_limit: str | None = Field(default=None, description="Bound (Kubernetes quantity).")

    @field_validator("size_limit")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        return None if v is None else check_quantity(v, "sizeLimit")


class ConfigMapVolumeSource(SpecModel):
    name: str = Field(description="ConfigMap name.")
    default_mode: int | None = Field(default=None, ge=0, le=0o777, description="File mode.")
    optional: bool | None = Field(default=None, description="Start even if it is missing.")


class SecretVolumeSource(SpecModel):
    secret_name: str = Field(description="Secret name.")
    default_mode: int | None = Field(default=None, ge=0, le=0o777, description="File mode.")
    optional: bool | None = Field(default=None, description="Start even if it is missing.")


class CacheVolume(SpecModel):
    """What backs /cache (default: an emptyDir of 200Gi, gone with the pod)."""

    persistent_volume_claim: PvcSource | None = Field(default=None, description="A PVC.")
    nfs: NfsSource | None = Field(default=None, description="An NFS export.")
    empty_dir: EmptyDirSource | None = Field(default=None, description="Another emptyDir.")

    @model_validator(mode="after")
    def _one(self) -> CacheVolume:
        given = [f for f in type(self).model_fields if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of persistentVolumeClaim, nfs or emptyDir")
        return self


class Volume(SpecModel):
    name: str = Field(description="Volume name, referenced by volumeMounts.")
    persistent_volume_claim: PvcSource | None = Field(default=None, description="A PVC.")
    nfs: NfsSource | None = Field(default=None, description="An NFS export.")
    empty_dir: EmptyDirSource | None = Field(default=None, description="An emptyDir.")
    config_map: ConfigMapVolumeSource | None = Field(default=None, description="A ConfigMap.")
    secret: SecretVolumeSource | None = Field(default=None, description="A Secret.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        check_dns_label(v, "volume name")
        if v in BUILTIN_VOLUMES:
            raise ValueError(f"volume name {v!r} is kubetune's own; choose another name")
        return v

    @model_validator(mode="after")
    def _one(self) -> Volume:
        given = [f for f in type(self).model_fields if f != "name" and getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(
                f"volume {self.name!r}: set exactly one of persistentVolumeClaim, nfs, "
                "emptyDir, configMap or secret"
            )
        return self


class VolumeMount(SpecModel):
    name: str = Field(description="A volume of `volumes`.")
    mount_path: str = Field(description="Absolute path in the trainer container.")
    read_only: bool = Field(default=False, description="Mount read-only.")
    sub_path: str | None = Field(default=None, description="Mount only this path of the volume.")

    @field_validator("mount_path")
    @classmethod
    def _path(cls, v: str) -> str:
        norm = posixpath.normpath(v) if v.startswith("/") else ""
        if norm != v or v.startswith("//"):
            raise ValueError(f"mountPath {v[:100]!r}: use a normalized absolute path")
        for reserved in RESERVED_PATHS:
            if (
                v == "/"
                or v == reserved
                or reserved.startswith(v + "/")
                or v.startswith(reserved + "/")
            ):
                raise ValueError(
                    f"mountPath {v!r} would hide {reserved}, which kubetune mounts or writes; "
                    "use another path (the /cache volume is `cache:`)"
                )
        return v

    @field_validator("sub_path")
    @classmethod
    def _sub_path(cls, v: str | None) -> str | None:
        if v is not None and (v.startswith("/") or ".." in v.split("/")):
            raise ValueError(f"subPath {v[:100]!r} must be relative, without '..'")
        return v


class Affinity(SpecModel):
    """Pod affinity as in a PodSpec; the terms inside are checked by the API server when the
    attempt's Job is created (a refusal ends the attempt Failed/ApiRejected with its words)."""

    node_affinity: dict[str, Any] | None = Field(default=None, description="NodeAffinity.")
    pod_affinity: dict[str, Any] | None = Field(default=None, description="PodAffinity.")
    pod_anti_affinity: dict[str, Any] | None = Field(default=None, description="PodAntiAffinity.")

    @model_validator(mode="after")
    def _terms(self) -> Affinity:
        allowed = {
            "requiredDuringSchedulingIgnoredDuringExecution",
            "preferredDuringSchedulingIgnoredDuringExecution",
        }
        for field in type(self).model_fields:
            unknown = sorted(set(getattr(self, field) or {}) - allowed)
            if unknown:
                raise ValueError(
                    f"{field}: unknown key(s) {', '.join(unknown)}; allowed: "
                    f"{', '.join(sorted(allowed))}"
                )
        return self


class TopologySpread(SpecModel):
    """A topologySpreadConstraint. Without labelSelector and matchLabelKeys it spreads the
    pods of one attempt (the operator fills in their labels)."""

    max_skew: int = Field(ge=1, description="Most pods more in one domain than another.")
    topology_key: str = Field(description="Node label, e.g. topology.kubernetes.io/zone.")
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = Field(
        description="What the scheduler does when it cannot."
    )
    label_selector: dict[str, Any] | None = Field(default=None, description="Pods counted.")
    match_label_keys: list[str] | None = Field(default=None, description="Label keys matched.")
    min_domains: int | None = Field(default=None, ge=1, description="Domains at least.")
    node_affinity_policy: Literal["Honor", "Ignore"] | None = Field(
        default=None, description="Whether node affinity limits the domains counted."
    )
    node_taints_policy: Literal["Honor", "Ignore"] | None = Field(
        default=None, description="Whether node taints limit the domains counted."
    )

    @field_validator("topology_key")
    @classmethod
    def _key(cls, v: str) -> str:
        problem = qualified_name_problem(v)
        if problem:
            raise ValueError(f"topologyKey {v[:100]!r} is not a label key: {problem}")
        return v


class TrainerDefaults(ExtraMetadata):
    """Trainer-pod settings for every FineTuneJob this operator runs."""

    image_pull_secrets: list[NameRef] = Field(
        default_factory=list, description="Secrets for pulling the trainer image (each namespace)."
    )
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        default="IfNotPresent", description="Trainer image pull policy."
    )
    service_account_name: str | None = Field(
        default=None, description="Service account for jobs that name none (allow-list applies)."
    )
    env: list[EnvVar] = Field(
        default_factory=list, max_length=200, description="Environment (NCCL_*, proxies...)."
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list, max_length=20, description="Secrets/ConfigMaps as environment."
    )
    cache: CacheVolume | None = Field(
        default=None, description="What backs /cache (base models, quantized bases, datasets)."
    )
    volumes: list[Volume] = Field(default_factory=list, max_length=50, description="Volumes.")
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list, max_length=50, description="Mounts of `volumes`."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations.")
    affinity: Affinity | None = Field(default=None, description="Affinity.")
    topology_spread_constraints: list[TopologySpread] = Field(
        default_factory=list, description="Topology spread."
    )
    priority_class_name: str | None = Field(
        default=None, description="For jobs without spec.resources.priorityClassName."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Job and pod labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Pod annotations.")
    gpu_resource_name: str = Field(
        default="nvidia.com/gpu", description="Resource that spec.resources.gpusPerNode counts."
    )
    gpu_type_label: str = Field(
        default="nvidia.com/gpu.product", description="Node label spec.resources.gpuType selects."
    )
    extra_resources: dict[str, str] = Field(
        default_factory=dict,
        description="More extended resources per pod (requests = limits), e.g. RDMA devices.",
    )

    @field_validator("env")
    @classmethod
    def _env(cls, v: list[EnvVar]) -> list[EnvVar]:
        return check_env_list(v, platform=True)

    @field_validator("service_account_name", "priority_class_name")
    @classmethod
    def _names(cls, v: str | None) -> str | None:
        return None if v is None else check_dns_label(v, "name")

    @field_validator("node_selector")
    @classmethod
    def _selector(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v, "nodeSelector")

    @field_validator("gpu_resource_name")
    @classmethod
    def _gpu(cls, v: str) -> str:
        return _resource_name(v, "gpuResourceName")

    @field_validator("gpu_type_label")
    @classmethod
    def _gpu_label(cls, v: str) -> str:
        problem = qualified_name_problem(v)
        if problem:
            raise ValueError(f"gpuTypeLabel {v[:100]!r} is not a label key: {problem}")
        return v

    @field_validator("extra_resources")
    @classmethod
    def _extra(cls, v: dict[str, str]) -> dict[str, str]:
        for name, qty in v.items():
            _resource_name(name, "extraResources key")
            check_quantity(qty, f"extraResources {name!r}:")
        return v

    @model_validator(mode="after")
    def _mounts(self) -> TrainerDefaults:
        names = [v.name for v in self.volumes]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"volumes[{i}]: volume name {name!r} is listed twice")
        paths: set[str] = set()
        for i, m in enumerate(self.volume_mounts):
            if m.name not in names:
                raise ValueError(
                    f"volumeMounts[{i}]: no volume named {m.name!r} in `volumes` "
                    f"(have: {', '.join(names) or 'none'})"
                )
            if m.mount_path in paths:
                raise ValueError(f"volumeMounts[{i}]: mountPath {m.mount_path!r} is used twice")
            paths.add(m.mount_path)
        if self.gpu_resource_name in self.extra_resources:
            raise ValueError(
                f"extraResources: {self.gpu_resource_name!r} is the GPU resource "
                "(spec.resources.gpusPerNode counts it); remove it here"
            )
        return self


class TrainerDefaultsError(ValueError):
    """The trainer-defaults file is unreadable or invalid; one line per problem."""


def parse_trainer_defaults(data: Any, source: str = "trainer defaults") -> TrainerDefaults:
    if data is None:
        return TrainerDefaults()
    if not isinstance(data, dict):
        raise TrainerDefaultsError(f"{source}: must be a mapping of settings")
    try:
        return TrainerDefaults.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        errors = from_validation_error(exc, TrainerDefaults)
        raise TrainerDefaultsError("\n".join(f"{source}: {e}" for e in errors)) from None


def load_trainer_defaults(path: str | Path) -> TrainerDefaults:
    """The file (YAML or JSON) the chart renders from `trainerDefaults`; empty: no defaults."""
    try:
        docs = read_documents(path)
    except OSError as exc:
        raise TrainerDefaultsError(f"{path}: cannot read: {exc}") from None
    except (YamlLimitError, yaml.YAMLError) as exc:
        msg = shorten(str(exc).replace("\n", " "), 300)
        raise TrainerDefaultsError(f"{path}: not valid YAML: {msg}") from None
    if len(docs) > 1:
        raise TrainerDefaultsError(f"{path}: expected one YAML document, found {len(docs)}")
    return parse_trainer_defaults(docs[0] if docs else None, str(path))
