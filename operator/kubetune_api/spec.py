"""The FineTuneJob: one definition, used by the CRD, the operator and the trainer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ._base import SpecModel
from .constants import API_VERSION, KIND
from .kube_names import check_annotations, check_dns_label, check_labels
from .pod import PodSpec
from .spec_data import FORMATS_FOR_OBJECTIVE, DatasetSpec
from .spec_infra import (
    DistributedSpec,
    MetricsSpec,
    OutputSpec,
    ResourcesSpec,
    RunPolicySpec,
    TrackingSpec,
)
from .spec_model import AdapterSpec, ModelSpec, QuantizationSpec
from .spec_training import EvaluationSpec, TrainingSpec
from .uris import is_remote

Objective = Literal["sft", "dpo", "ranking"]
# Children are named <name>-a<attempt>[-<suffix>]; keep room for that in 63 characters.
MAX_NAME_LENGTH = 40


class FineTuneJobSpec(SpecModel):
    model: ModelSpec = Field(description="The base model.")
    objective: Objective = Field(
        default="sft",
        description="sft (supervised), dpo (preference pairs) or ranking (ranked lists).",
    )
    adapter: AdapterSpec = Field(default_factory=AdapterSpec, description="The LoRA adapter.")
    quantization: QuantizationSpec = Field(
        default_factory=QuantizationSpec, description="Quantization of the frozen base."
    )
    dataset: DatasetSpec = Field(description="Training data.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Optimisation.")
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec, description="Evaluation after training."
    )
    distributed: DistributedSpec = Field(
        default_factory=DistributedSpec, description="Nodes, processes and DeepSpeed."
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="Pod resources and placement (cluster only)."
    )
    pod: PodSpec = Field(
        default_factory=PodSpec,
        description="Environment, secret references and labels of the trainer pods (cluster "
        "only), refining the platform's trainer defaults.",
    )
    output: OutputSpec = Field(default_factory=OutputSpec, description="Where artifacts go.")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="MLflow tracking.")
    metrics: MetricsSpec = Field(default_factory=MetricsSpec, description="Prometheus metrics.")
    run_policy: RunPolicySpec = Field(
        default_factory=RunPolicySpec, description="Retries, deadlines, suspension, queueing."
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> FineTuneJobSpec:
        allowed = FORMATS_FOR_OBJECTIVE[self.objective]
        if self.dataset.format not in allowed:
            raise ValueError(
                f"spec.dataset.format: {self.dataset.format!r} cannot train objective "
                f"{self.objective!r}; use one of {', '.join(allowed)}"
            )
        if self.model.task != "causal_lm" and self.objective != "sft":
            raise ValueError(
                f"spec.objective: {self.objective!r} needs a causal_lm model "
                f"(model.task is {self.model.task!r}); use objective sft"
            )
        res, dist = self.resources, self.distributed
        if res.gpus_per_node > 0 and dist.processes_per_node > res.gpus_per_node:
            raise ValueError(
                f"spec.distributed.processesPerNode: {dist.processes_per_node} processes per "
                f"node but only {res.gpus_per_node} GPUs per node; use at most "
                f"{res.gpus_per_node} (one process per GPU)"
            )
        if dist.nodes > 1 and not is_remote(self.output.uri):
            raise ValueError(
                "spec.output.uri: a multi-node job needs shared storage that every pod can "
                "reach; use s3://bucket/prefix"
            )
        if self.output.credentials_secret and not is_remote(self.output.uri):
            raise ValueError(
                "spec.output.credentialsSecret: only applies to an s3:// output.uri; "
                "remove it for a local output"
            )
        if self.output.s3_endpoint and not is_remote(self.output.uri):
            raise ValueError(
                "spec.output.s3Endpoint: only applies to an s3:// output.uri; remove it"
            )
        q = self.quantization
        if dist.deepspeed == "zero3" and q.mode == "4bit":
            compute = q.compute_dtype if q.compute_dtype != "auto" else "bf16"
            if q.quant_storage_dtype != compute:
                raise ValueError(
                    "spec.quantization.quantStorageDtype: 4-bit with DeepSpeed ZeRO-3 shards "
                    f"the packed weights, so it must equal the compute dtype; set "
                    f"quantStorageDtype: {compute}"
                )
        if dist.deepspeed == "zero3" and q.mode == "8bit":
            raise ValueError(
                "spec.distributed.deepspeed: ZeRO-3 cannot shard 8-bit weights; use zero2 "
                "or quantization.mode 4bit"
            )
        opt = self.training.optimizer
        # DeepSpeed's CPU Adam is the offloaded optimizer: bitsandbytes' 8-bit/paged ones keep
        # CUDA state it cannot move, and SGD has no DeepSpeed CPU kernel.
        if dist.cpu_offload and opt != "adamw_torch":  # cpuOffload implies DeepSpeed
            raise ValueError(
                f"spec.training.optimizer: {opt!r} cannot run with spec.distributed.cpuOffload: "
                "the offloaded optimizer is DeepSpeed's CPU Adam; set optimizer: adamw_torch or "
                "turn cpuOffload off"
            )
        if dist.deepspeed == "zero3" and opt in ("paged_adamw_8bit", "adamw_8bit"):
            raise ValueError(
                f"spec.training.optimizer: {opt!r} (bitsandbytes) cannot step ZeRO-3's "
                "partitioned parameters; use adamw_torch, or deepspeed: zero2"
            )
        if self.metrics.port == dist.master_port:
            raise ValueError(
                f"spec.metrics.port: {self.metrics.port} is also spec.distributed.masterPort; "
                "the pod's Service and container cannot list one port twice: use another port"
            )
        if self.training.engine == "unsloth" and (dist.world_size > 1 or dist.deepspeed != "none"):
            raise ValueError(
                "spec.training.engine: unsloth trains on a single GPU; use engine "
                "huggingface for distributed or DeepSpeed runs"
            )
        return self


_SERVER = "Set by the API server; accepted as `kubectl get -o yaml` prints it, not used."


class ObjectMeta(SpecModel):
    """Kubernetes ObjectMeta: what kubetune reads is checked as the API server checks it; the
    fields the server sets (`kubectl get -o yaml` output) are accepted and not used; any other
    key is unknown, as it is to the API server."""

    name: str = Field(description="FineTuneJob name (a DNS-1035 label, at most 40 characters).")
    namespace: str = Field(default="default", description="Namespace (a DNS-1123 label).")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
    # Set by the API server; accepted so that its own output validates.
    uid: str | None = Field(default=None, description=_SERVER)
    resource_version: str | None = Field(default=None, description=_SERVER)
    generation: int | None = Field(default=None, description=_SERVER)
    creation_timestamp: str | None = Field(default=None, description=_SERVER)
    deletion_timestamp: str | None = Field(default=None, description=_SERVER)
    deletion_grace_period_seconds: int | None = Field(default=None, description=_SERVER)
    generate_name: str | None = Field(default=None, description=_SERVER)
    self_link: str | None = Field(default=None, description=_SERVER)
    finalizers: list[str] | None = Field(default=None, description=_SERVER)
    owner_references: list[dict[str, Any]] | None = Field(default=None, description=_SERVER)
    managed_fields: list[dict[str, Any]] | None = Field(default=None, description=_SERVER)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            return check_dns_label(v, "name", MAX_NAME_LENGTH, first_letter=True)
        except ValueError:
            raise ValueError(
                f"{v[:100]!r} is not a valid FineTuneJob name (a DNS-1035 label): use at most "
                f"{MAX_NAME_LENGTH} lowercase letters, digits and '-', starting with a letter "
                "(child objects append an attempt suffix)"
            ) from None

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return check_dns_label(v, "namespace")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v, "label")

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        return check_annotations(v, "annotations")


class FineTuneJob(SpecModel):
    api_version: Literal["kubetune.io/v1alpha1"] = Field(
        default=API_VERSION, alias="apiVersion", description="API version."
    )
    kind: Literal["FineTuneJob"] = Field(default=KIND, description="Kind.")
    metadata: ObjectMeta = Field(description="Object metadata.")
    spec: FineTuneJobSpec = Field(description="What to fine-tune, on what, and how.")
    status: dict[str, Any] | None = Field(default=None, description="Ignored on input.")

    def to_manifest(self) -> dict[str, Any]:
        """The object as YAML/JSON would hold it (camelCase, defaults resolved).

        It parses again (the operator's ConfigMap is read back by the trainer): the
        4-bit-only quantization options are left out unless mode is 4bit.
        """
        data = self.model_dump(by_alias=True, exclude_none=True, exclude={"status"}, mode="json")
        quant = data["spec"].get("quantization") or {}
        if quant.get("mode") != "4bit":
            for key in ("quantType", "doubleQuant", "computeDtype", "quantStorageDtype"):
                quant.pop(key, None)
        return data
