"""Shared by the model-family tests: one LoRA run of a tiny family base (tests/trainer/modeling)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.builders import make_job, prepared

FAMILIES = ("llama", "mistral", "qwen2", "gemma")
# Markers each family's chat template writes around a user turn (prompt side).
CHAT_MARKERS = {
    "llama": ("<|im_start|>user\n", "<|im_start|>assistant\n"),
    "mistral": ("<s>[INST] ", " [/INST]"),
    "qwen2": ("<｜begin▁of▁sentence｜><｜User｜>", "<｜Assistant｜>"),
    "gemma": ("<bos><start_of_turn>user\n", "<start_of_turn>model\n"),
}


def train(base: Path, out: Path, name: str = "fam", **spec: Any) -> Any:
    """One real `execute` of a tiny qa job on `base`; the RunResult (asserts success)."""
    from kubetune_trainer.engine.main import execute

    spec.setdefault("training", {})
    spec["training"] = {"maxSteps": 8, "learningRate": 0.01, **spec["training"]}
    job = make_job(out, name=name, model={"base": str(base)}, **spec)
    code, result = execute(job, prepared=prepared(32, 8), say=lambda s: None)
    assert code == 0 and result is not None
    return result
