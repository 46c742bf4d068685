"""The one message the trainer sends the operator: rank 0's termination-log summary.

The trainer (kubetune_trainer.engine.main) writes it with `TerminationSummary.to_line()`;
the operator (observe -> decide) and the local job queue read it with
`TerminationSummary.read()`. Keys are snake_case like the trainer's other records
(report.json, metrics.jsonl) and are exactly what trainer images have always written, so a
pod started by an older image reads the same: no second spelling is needed on read.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .status import AdapterArtifact

# Kubernetes keeps at most 4096 bytes of a termination message.
LINE_LIMIT = 4000
# Without a JSON line (a crash before the summary; FallbackToLogsOnError gives the log's
# tail), the last characters of the text are kept as the message.
_TAIL = 500


class TerminationSummary(BaseModel):
    """Where the trainer stopped and what it left. Every field is optional: a failure during
    setup has no step, and only a successful run has an adapter."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    phase: str = Field(default="", description="Trainer phase it ended in (setup, training, done).")
    message: str = Field(default="", description="One paragraph: what happened and what to do.")
    exit_code: int | None = Field(default=None, description="The process exit code (ExitCode).")
    step: int | None = Field(default=None, ge=0, description="Optimizer steps done.")
    loss: float | None = Field(default=None, description="Last training loss.")
    eval_loss: float | None = Field(default=None, description="Validation loss after training.")
    base_eval_loss: float | None = Field(default=None, description="Base model's validation loss.")
    checkpoint: str | None = Field(default=None, description="Latest committed checkpoint URI.")
    adapter_uri: str | None = Field(default=None, description="Where the final adapter is.")
    adapter_sha256: str | None = Field(default=None, description="sha256 of the adapter weights.")
    adapter_size: int | None = Field(default=None, ge=0, description="Adapter weights, bytes.")

    @field_validator("loss", "eval_loss", "base_eval_loss", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        # A diverged run's NaN loss: JSON and the status have no NaN, and writing the
        # summary of a failure must not fail itself; the message says what happened.
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    def adapter(self) -> AdapterArtifact | None:
        """The status's adapter object, if the run saved one."""
        if not self.adapter_uri:
            return None
        return AdapterArtifact(
            uri=self.adapter_uri,
            sha256=self.adapter_sha256 or "",
            size_bytes=self.adapter_size or 0,
        )

    def to_line(self, limit: int = LINE_LIMIT) -> str:
        """One JSON line within `limit`: a message too long is cut, never the JSON."""
        data = self.model_dump(exclude_none=True)
        line = json.dumps(data, sort_keys=True)
        message = data.get("message", "")
        while len(line) > limit and message:
            # Escapes (\n, \uXXXX) make the JSON longer than the text: cut until it fits.
            message = message[: max(0, len(message) - (len(line) - limit) - 3)]
            data["message"] = message + "..."
            line = json.dumps(data, sort_keys=True)
        return line

    @classmethod
    def read(cls, text: str | None) -> TerminationSummary:
        """The summary in a pod's termination message; never raises.

        The pod is not trusted and may run another trainer version: the last JSON object
        line wins; keys this model does not know (a newer trainer) or values of the wrong
        type are dropped one by one, the rest is kept. Text without one (a crash log tail)
        becomes the message."""
        if not text:
            return cls()
        for line in reversed(text.strip().splitlines()):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                return cls._lenient(data)
        return cls(message=text.strip()[-_TAIL:])

    @classmethod
    def _lenient(cls, data: dict[str, Any]) -> TerminationSummary:
        data = {k: v for k, v in data.items() if k in cls.model_fields and v is not None}
        for _ in range(len(cls.model_fields) + 1):
            try:
                return cls.model_validate(data)
            except ValidationError as exc:
                bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
                if not bad & set(data):
                    break
                data = {k: v for k, v in data.items() if k not in bad}
        return cls()
