"""Where a run is, for the failure summary: phase, step, last loss, last checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback


@dataclass
class Progress:
    phase: str = "setup"
    step: int | None = None
    loss: float | None = None
    checkpoint: str | None = None
    store: Any = None
    rank: int = 0


class ProgressCallback(TrainerCallback):
    """Keep `Progress` current during training, so a crash at step 900 says step 900. (The
    last committed checkpoint is set once, in run_job's finally, after the commit in flight
    settled: only then is it final.)"""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        self.progress.step = state.global_step
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> Any:
        if logs and "loss" in logs:
            self.progress.loss = float(logs["loss"])
        return control
