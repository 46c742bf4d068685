"""Where and how it runs: distribution, resources, output, tracking, run policy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ._base import SpecModel, crd_pattern
from .constants import DEFAULT_MASTER_PORT, DEFAULT_METRICS_PORT
from .kube_names import (
    DNS1123_LABEL,
    IMAGE,
    LABEL_VALUE,
    MAX_IMAGE_LENGTH,
    QUANTITY,
    check_dns_label,
    check_image,
    check_label_value,
    check_labels,
    check_quantity,
    qualified_name_problem,
)
from .uris import (
    HTTP_URL,
    REGISTRY_NAME,
    check_http_url,
    check_mlflow_uri,
    check_registry_name,
    check_storage_uri,
)

_DNS = crd_pattern(DNS1123_LABEL, 63)


def _dns_label(v: str | None, what: str) -> str | None:
    return None if v is None else check_dns_label(v, what)


class DistributedSpec(SpecModel):
    nodes: int = Field(default=1, ge=1, le=256, description="Pods (nodes) in the Indexed Job.")
    processes_per_node: int = Field(
        default=1, ge=1, le=64, description="torchrun processes per node (usually one per GPU)."
    )
    deepspeed: Literal["none", "zero2", "zero3"] = Field(
        default="none", description="DeepSpeed ZeRO stage, generated from this spec."
    )
    cpu_offload: bool = Field(
        default=False, description="Offload optimizer (ZeRO-2/3) and parameters (ZeRO-3) to CPU."
    )
    rendezvous_timeout_seconds: int = Field(
        default=600,
        ge=10,
        le=7200,
        description="How long ranks wait for each other (start-up and a lost peer).",
    )
    master_port: int = Field(
        default=DEFAULT_MASTER_PORT, ge=1024, le=65535, description="Rendezvous port."
    )

    @property
    def world_size(self) -> int:
        return self.nodes * self.processes_per_node


class Toleration(SpecModel):
    key: str | None = Field(default=None, description="Taint key.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Match operator.")
    value: str | None = Field(
        default=None, description="Taint value.", json_schema_extra=crd_pattern(LABEL_VALUE, 63)
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect."
    )
    toleration_seconds: int | None = Field(default=None, description="For NoExecute taints.")

    @model_validator(mode="after")
    def _as_the_api_server(self) -> Toleration:
        # The same checks the API server makes on a Pod's tolerations.
        if self.key:
            problem = qualified_name_problem(self.key)
            if problem:
                raise ValueError(f"key {self.key[:100]!r} is not a taint key: {problem}")
        elif self.operator != "Exists":
            raise ValueError("a toleration without `key` needs `operator: Exists`")
        if self.value:
            check_label_value(self.value, "value")
            if self.operator == "Exists":
                raise ValueError("`value` must be empty with `operator: Exists`")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("`tolerationSeconds` needs `effect: NoExecute`")
        return self


class ResourcesSpec(SpecModel):
    gpus_per_node: int = Field(
        default=0,
        ge=0,
        le=64,
        description="GPUs per pod, as the cluster's GPU resource "
        "(trainer defaults gpuResourceName: nvidia.com/gpu unless the platform says otherwise).",
    )
    gpu_type: str | None = Field(
        default=None,
        description="GPU product, e.g. NVIDIA-A100-SXM4-80GB: the value of the node label "
        "trainer defaults gpuTypeLabel names (nvidia.com/gpu.product unless set).",
        json_schema_extra=crd_pattern(LABEL_VALUE, 63),
    )
    cpu: str = Field(
        default="2",
        description="CPU request per pod (Kubernetes quantity).",
        json_schema_extra=crd_pattern(QUANTITY),
    )
    memory: str = Field(
        default="8Gi",
        description="Memory request and limit per pod.",
        json_schema_extra=crd_pattern(QUANTITY),
    )
    shm_size: str = Field(
        default="2Gi",
        description="Size of the /dev/shm memory volume.",
        json_schema_extra=crd_pattern(QUANTITY),
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod node selector.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Pod tolerations.")
    priority_class_name: str | None = Field(
        default=None, description="Pod priority class.", json_schema_extra=_DNS
    )
    image: str | None = Field(
        default=None,
        description="Trainer image (registry/repository:tag or @sha256:<digest>); defaults to "
        "the operator's matching version. Pods run it with args [launch], so its entrypoint "
        "must be kubetune's (build FROM the trainer image).",
        json_schema_extra=crd_pattern(IMAGE, MAX_IMAGE_LENGTH),
    )
    service_account_name: str | None = Field(
        default=None, description="Pod service account.", json_schema_extra=_DNS
    )

    @field_validator("cpu", "memory", "shm_size")
    @classmethod
    def _quantity(cls, v: str) -> str:
        return check_quantity(v, "")

    @field_validator("priority_class_name", "service_account_name")
    @classmethod
    def _names(cls, v: str | None) -> str | None:
        return _dns_label(v, "name")

    @field_validator("node_selector")
    @classmethod
    def _selector(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v, "nodeSelector")

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        return None if v is None else check_image(v)

    @field_validator("gpu_type")
    @classmethod
    def _gpu_type(cls, v: str | None) -> str | None:
        # It becomes the value of the nodeSelector label nvidia.com/gpu.product.
        return v if v is None else check_label_value(v, "gpuType")


class OutputSpec(SpecModel):
    uri: str = Field(
        default="./runs",
        description="Artifact root: s3://bucket/prefix or a local folder. Each job writes "
        "under <uri>/<namespace>/<name>/.",
    )
    credentials_secret: str | None = Field(
        default=None,
        description="Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, mounted by "
        "reference (credentials never go in the spec).",
        json_schema_extra=_DNS,
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible store (MinIO, Ceph...).",
        json_schema_extra=crd_pattern(HTTP_URL),
    )
    cleanup_policy: Literal["retain", "delete"] = Field(
        default="retain", description="What happens to the artifacts when the job is deleted."
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        return check_storage_uri(v, "output.uri")

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        return None if v is None else check_http_url(v, "output.s3Endpoint")

    @field_validator("credentials_secret")
    @classmethod
    def _secret(cls, v: str | None) -> str | None:
        return _dns_label(v, "Secret name")


class TrackingSpec(SpecModel):
    mlflow_uri: str | None = Field(
        default=None, description="MLflow tracking URI (http(s):// or sqlite:///)."
    )
    experiment: str = Field(default="kubetune", min_length=1, description="MLflow experiment.")
    register_as: str | None = Field(
        default=None,
        description=(
            "Name of the adapter in kubetune's registry (under the output root) and in MLflow's "
            "model registry (default: the job's name). With tracking.mlflowUri set, every "
            "successful run adds a model version carrying the run's lineage as tags."
        ),
        json_schema_extra=crd_pattern(REGISTRY_NAME, 128),
    )

    @field_validator("mlflow_uri")
    @classmethod
    def _mlflow_uri(cls, v: str | None) -> str | None:
        return None if v is None else check_mlflow_uri(v)

    @field_validator("register_as")
    @classmethod
    def _register_as(cls, v: str | None) -> str | None:
        return None if v is None else check_registry_name(v)


class MetricsSpec(SpecModel):
    port: int = Field(
        default=DEFAULT_METRICS_PORT, ge=1024, le=65535, description="Trainer /metrics port."
    )
    pushgateway_url: str | None = Field(
        default=None,
        description="Push final metrics to this Prometheus Pushgateway (http(s)://host:port).",
        json_schema_extra=crd_pattern(HTTP_URL),
    )

    @field_validator("pushgateway_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else check_http_url(v, "metrics.pushgatewayUrl")


class RunPolicySpec(SpecModel):
    max_restarts: int = Field(default=3, ge=0, le=100, description="Retries of retryable failures.")
    backoff_seconds: int = Field(
        default=30, ge=0, le=3600, description="First retry delay; doubles each restart."
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Fail the job after this many seconds in total."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete the FineTuneJob this long after it finishes."
    )
    suspend: bool = Field(default=False, description="Stop the pods and keep checkpoints.")
    queue_name: str | None = Field(
        default=None, description="Kueue LocalQueue for admission.", json_schema_extra=_DNS
    )
    resume: Literal["auto", "force", "never"] = Field(
        default="auto",
        description=(
            "Which checkpoints a (re)started run continues from. auto: only this run's own "
            "(same training fields of the spec, same data fingerprint, and on a cluster the "
            "same FineTuneJob uid); a mismatch refuses to start, and a re-created FineTuneJob "
            "of the same name starts fresh, moving the earlier checkpoints aside. force: the "
            "latest committed checkpoint whatever it was trained on. never: start fresh, "
            "moving earlier checkpoints aside (like `kubetune run --no-resume`)."
        ),
    )

    @field_validator("queue_name")
    @classmethod
    def _queue(cls, v: str | None) -> str | None:
        return _dns_label(v, "queue name")
