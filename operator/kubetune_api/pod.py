"""Kubernetes pod pieces a FineTuneJob (spec.pod) and the platform's trainer defaults share:
environment variables, envFrom sources, extra labels and annotations, and the names kubetune
keeps for itself (a job or a platform setting one would break the launcher or escape it)."""

from __future__ import annotations

from typing import Final

from pydantic import Field, field_validator, model_validator

from ._base import SpecModel, crd_pattern
from .constants import ANNOTATION_PREFIX, GROUP, LABEL_KUEUE_PRIORITY, LABEL_KUEUE_QUEUE
from .kube_names import DNS1123_LABEL, check_annotations, check_dns_label, check_labels, matches

# What Kubernetes accepts as an env var name (the classic C_IDENTIFIER-like rule).
ENV_NAME: Final = r"[-._a-zA-Z][-._a-zA-Z0-9]*"
_DNS = crd_pattern(DNS1123_LABEL, 63)
# Secret and ConfigMap keys.
_CONFIG_KEY: Final = r"[-._a-zA-Z0-9]+"

# Set by the operator or torchrun in every trainer pod: the launcher's contract
# (kubetune_api.constants.Env), torch.distributed's rendezvous, and the caches the read-only
# root filesystem sends to /cache and /tmp. Nobody may set these, platform or job.
RESERVED_ENV_PREFIXES: Final = ("KUBETUNE_", "TORCHELASTIC_")
# kubetune's settings a job or a platform may choose: they pick among what the image has
# (KUBETUNE_ALLOCATOR: glibc's malloc or the image's jemalloc) and change no contract.
SETTABLE_KUBETUNE_ENV: Final = frozenset({"KUBETUNE_ALLOCATOR"})
RESERVED_ENV: Final = frozenset({
    "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
    "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "NODE_RANK",
    "JOB_COMPLETION_INDEX", "HOME", "XDG_CACHE_HOME", "HF_HOME", "TRITON_CACHE_DIR",
    "AWS_ENDPOINT_URL", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
})  # fmt: skip
# A platform may set these (an NCCL network plugin's library path, say); a job may not: they
# change which code runs or which GPUs a process sees (NVIDIA_VISIBLE_DEVICES=all would reach
# GPUs the device plugin did not give the pod).
PLATFORM_ONLY_ENV: Final = frozenset({
    "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP",
    "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "CUDA_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL",
})  # fmt: skip

# Label/annotation keys kubetune sets and reads on its children (constants.LABEL_*): the
# Kueue queue comes from spec.runPolicy.queueName, the priority from the FineTuneJob's label.
RESERVED_LABEL_KEYS: Final = frozenset({
    "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by", LABEL_KUEUE_QUEUE, LABEL_KUEUE_PRIORITY,
})  # fmt: skip
RESERVED_KEY_PREFIXES: Final = (f"{GROUP}/", f"{ANNOTATION_PREFIX}/", "kueue.x-k8s.io/")


def reserved_env_problem(name: str, *, platform: bool) -> str | None:
    """Why `name` may not be set (by a platform default, or else by a job), or None."""
    if name in SETTABLE_KUBETUNE_ENV:
        return None
    if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
        return (
            f"{name!r} is set by kubetune in every trainer pod (the launcher and torchrun "
            "read it); choose another name"
        )
    if not platform and name in PLATFORM_ONLY_ENV:
        return (
            f"{name!r} changes which code or GPUs the trainer uses, so only the platform's "
            "trainer defaults may set it (docs/operations.md#configure-for-your-cluster)"
        )
    return None


def check_extra_labels(values: dict[str, str], what: str, *, annotations: bool) -> None:
    """Labels/annotations added to trainer pods: valid, and none of kubetune's own keys."""
    (check_annotations if annotations else check_labels)(values, what)
    for key in values:
        if key in RESERVED_LABEL_KEYS or key.startswith(RESERVED_KEY_PREFIXES):
            raise ValueError(
                f"{what} key {key!r} is kubetune's own (it labels and finds its children "
                "with it); use another key"
            )


class KeyRef(SpecModel):
    """One key of a Secret or ConfigMap in the FineTuneJob's namespace."""

    name: str = Field(description="Name of the Secret or ConfigMap.", json_schema_extra=_DNS)
    key: str = Field(description="Key inside it.", json_schema_extra=crd_pattern(_CONFIG_KEY, 253))
    optional: bool | None = Field(default=None, description="Start even if it is missing.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_dns_label(v, "name")

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if len(v) > 253 or not matches(_CONFIG_KEY, v):
            raise ValueError(f"key {v[:100]!r}: use letters, digits, '-', '_' or '.'")
        return v


class EnvVarSource(SpecModel):
    secret_key_ref: KeyRef | None = Field(
        default=None, description="A key of a Secret (e.g. HF_TOKEN), by reference."
    )
    config_map_key_ref: KeyRef | None = Field(default=None, description="A key of a ConfigMap.")

    @model_validator(mode="after")
    def _one(self) -> EnvVarSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("set exactly one of `secretKeyRef` or `configMapKeyRef`")
        return self


class EnvVar(SpecModel):
    """An environment variable of the trainer container."""

    name: str = Field(description="Variable name.", json_schema_extra=crd_pattern(ENV_NAME, 256))
    value: str | None = Field(default=None, description="A literal value.")
    value_from: EnvVarSource | None = Field(
        default=None, description="A Secret or ConfigMap key (never put secrets in `value`)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if len(v) > 256 or not matches(ENV_NAME, v):
            raise ValueError(
                f"{v[:100]!r} is not an environment variable name: letters, digits, '_', "
                "'-' or '.', not starting with a digit"
            )
        return v

    @model_validator(mode="after")
    def _value_or_ref(self) -> EnvVar:
        if (self.value is None) == (self.value_from is None):
            raise ValueError(f"env {self.name!r}: set exactly one of `value` or `valueFrom`")
        return self


class NameRef(SpecModel):
    """An object by name (a LocalObjectReference, e.g. an imagePullSecret)."""

    name: str = Field(description="Name in the FineTuneJob's namespace.", json_schema_extra=_DNS)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_dns_label(v, "name")


class ObjectRef(NameRef):
    optional: bool | None = Field(default=None, description="Start even if it is missing.")


class EnvFromSource(SpecModel):
    """Every key of a Secret or ConfigMap as environment variables (`env` wins over them)."""

    prefix: str | None = Field(
        default=None,
        description="Prepended to each key.",
        json_schema_extra=crd_pattern(ENV_NAME, 128),
    )
    secret_ref: ObjectRef | None = Field(default=None, description="A Secret.")
    config_map_ref: ObjectRef | None = Field(default=None, description="A ConfigMap.")

    @model_validator(mode="after")
    def _one(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("set exactly one of `secretRef` or `configMapRef`")
        if self.prefix is not None and not matches(ENV_NAME, self.prefix):
            raise ValueError(f"prefix {self.prefix[:100]!r} is not an env var name prefix")
        return self


def check_env_list(env: list[EnvVar], *, platform: bool) -> list[EnvVar]:
    seen: set[str] = set()
    for i, var in enumerate(env):
        problem = reserved_env_problem(var.name, platform=platform)
        if problem:
            raise ValueError(f"env[{i}]: {problem}")
        if var.name in seen:
            raise ValueError(f"env[{i}]: {var.name!r} is listed twice; keep one")
        seen.add(var.name)
    return env


class ExtraMetadata(SpecModel):
    """The checks of `labels` and `annotations` added to trainer pods (the job's and the
    platform's); the subclass declares the fields with its own descriptions."""

    @field_validator("labels", check_fields=False)
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        check_extra_labels(v, "label", annotations=False)
        return v

    @field_validator("annotations", check_fields=False)
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        check_extra_labels(v, "annotation", annotations=True)
        return v


class PodSpec(ExtraMetadata):
    """What a researcher sets on the job's trainer pods, refining the platform's defaults."""

    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=200,
        description="Environment variables, merged by name over the platform's defaults (the "
        "job's value wins). Secrets by reference: `valueFrom.secretKeyRef` (e.g. HF_TOKEN). "
        "KUBETUNE_* (but KUBETUNE_ALLOCATOR: system or jemalloc), the torchrun rendezvous "
        "variables and a few kubetune sets are refused.",
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list,
        max_length=20,
        description="Secrets/ConfigMaps whose keys all become environment variables (after "
        "the platform's). `env` and kubetune's own variables win over them.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on the attempt's Job and pods, merged over the platform's "
        "(kubetune's own keys are refused).",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Extra annotations on the trainer pods, merged over the platform's.",
    )

    @field_validator("env")
    @classmethod
    def _env(cls, v: list[EnvVar]) -> list[EnvVar]:
        return check_env_list(v, platform=False)
