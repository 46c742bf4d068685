"""Where training reports go: the engine calls every sink; sinks never call the engine.

The engine builds one `LogRow` per logging step and hands it to each sink
(metrics.jsonl writer, progress bar, Prometheus exporter, MLflow run). A sink must
not raise for a transient problem of its own backend: training outlives dashboards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class RunInfo:
    namespace: str
    name: str
    attempt: int
    output_uri: str  # <output>/<namespace>/<name>
    rank: int = 0
    world_size: int = 1
    resumed_from: str | None = None  # checkpoint URI, when resuming
    state: dict[str, Any] = field(default_factory=dict)  # e.g. {"mlflow_run_id": ...}


@dataclass
class LogRow:
    """One logging step. Optional values are None when not measured at this step."""

    step: int
    total_steps: int
    epoch: float
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    tokens_seen: int | None = None  # real tokens this attempt so far, all ranks (a counter)
    eval_loss: float | None = None
    eta_seconds: float | None = None
    memory_bytes: dict[str, int] = field(default_factory=dict)  # kind -> bytes (rss, gpu...)
    extra: dict[str, float] = field(default_factory=dict)  # e.g. eval_perplexity, rewards/*

    def as_dict(self) -> dict[str, Any]:
        row = {k: v for k, v in self.__dict__.items() if k not in ("extra", "memory_bytes")}
        row.update(self.extra)
        if self.memory_bytes:
            row["memory_bytes"] = dict(self.memory_bytes)
        return {k: v for k, v in row.items() if v is not None}


class Sink(Protocol):
    def on_start(self, run: RunInfo, params: dict[str, Any]) -> None: ...

    def on_log(self, row: LogRow) -> None: ...

    def on_checkpoint(self, uri: str, step: int, seconds: float) -> None: ...

    def on_end(self, summary: dict[str, Any], artifacts_dir: str | None) -> None: ...
