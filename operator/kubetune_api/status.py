"""The FineTuneJob status the operator writes (and the CRD's status schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import ConfigDict, Field

from ._base import StatusModel

PhaseName = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# metav1.Condition's own validation (k8s.io/apimachinery/pkg/apis/meta/v1/types.go).
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_MESSAGE_MAX = 32768


class Condition(StatusModel):
    """One condition in metav1.Condition's shape (what kstatus, Flux and kubectl wait read)."""

    model_config = ConfigDict(
        json_schema_extra={
            # metav1.Condition requires all five (message may be empty).
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
        }
    )

    type: str = Field(
        max_length=316,
        pattern=CONDITION_TYPE_PATTERN,
        description="Condition type (see kubetune_api.constants.ConditionType).",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Condition status.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
        description="CamelCase reason (kubetune_api.constants.Reason).",
    )
    message: str = Field(
        default="", max_length=CONDITION_MESSAGE_MAX, description="Human-readable detail."
    )
    last_transition_time: str = Field(
        default_factory=now_rfc3339,
        json_schema_extra={"format": "date-time"},
        description="When the status last changed (RFC 3339).",
    )
    observed_generation: int = Field(
        default=0,
        ge=0,
        description="The metadata.generation this condition was set from.",
    )


class Progress(StatusModel):
    step: int = Field(default=0, ge=0, description="Optimizer steps done.")
    total_steps: int = Field(default=0, ge=0, description="Optimizer steps planned.")
    epoch: float = Field(default=0, ge=0, description="Epochs done (fractional).")
    loss: float | None = Field(default=None, description="Latest training loss.")
    eval_loss: float | None = Field(default=None, description="Latest validation loss.")
    tokens_per_second: float | None = Field(default=None, description="Training throughput.")
    eta_seconds: float | None = Field(default=None, description="Estimated seconds remaining.")
    eta: str = Field(default="", description="etaSeconds as 1h05m or 12m30s, for kubectl get.")
    display: str = Field(default="", description="step/total (percent), for kubectl get.")


class AdapterArtifact(StatusModel):
    uri: str = Field(description="Where the final adapter is.")
    sha256: str = Field(default="", description="sha256 of the adapter weights file.")
    size_bytes: int = Field(default=0, ge=0, description="Size of the adapter weights file.")


class FineTuneJobStatus(StatusModel):
    phase: PhaseName = Field(default="Pending", description="Lifecycle phase.")
    message: str = Field(default="", description="Latest human-readable summary.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Conditions, one per type (Ready summarises: True once Succeeded).",
        # One entry per type: server-side apply and kubectl merge them by type.
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    observed_generation: int = Field(default=0, ge=0, description="Spec generation acted on.")
    progress: Progress = Field(default_factory=Progress, description="Training progress.")
    attempt: int = Field(default=0, ge=0, description="Current attempt (1-based once started).")
    restarts: int = Field(default=0, ge=0, description="Retries counted against maxRestarts.")
    preemptions: int = Field(default=0, ge=0, description="Preemptions (not counted as restarts).")
    job_name: str | None = Field(default=None, description="Name of the current Job.")
    last_checkpoint: str | None = Field(default=None, description="Latest committed checkpoint.")
    adapter: AdapterArtifact | None = Field(default=None, description="The final adapter.")
    next_attempt_after: str | None = Field(
        default=None, description="Backoff: the next attempt starts after this time."
    )
    start_time: str | None = Field(default=None, description="When the first attempt started.")
    completion_time: str | None = Field(default=None, description="When the job finished.")
