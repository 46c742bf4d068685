"""The FineTuneJob: one definition, used by the CRD, the operator and the trainer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ._base import SpecModel
from .constants import API_VERSION, KIND
from .kube_names import check_annotations, check_dns_label, check_labels
from .pod import PodSpec
from .rules import NAME_RULE, enforce
from .spec_data import DatasetSpec
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

Objective = Literal["sft", "dpo", "ranking"]


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
        # The same rules the CRD's x-kubernetes-validations hold (rules.py), same messages.
        enforce(self)
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
        if not NAME_RULE.check(v):  # the CRD's rule, same message
            raise ValueError(NAME_RULE.message)
        return v

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
