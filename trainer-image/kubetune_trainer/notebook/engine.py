"""The notebook's ENGINE parameter: which training stack runs the job (spec.training.engine).

auto picks Unsloth where it can run (a CUDA GPU and the `unsloth` package, installed with
`pip install "kubetune[trainer,unsloth]"`) and the Hugging Face stack everywhere else;
`unsloth` on a machine where it cannot run is refused by the trainer's start-up check with
the reason and the fallback (kubetune_trainer.unsloth_backend.preflight).
"""

from __future__ import annotations

from typing import Any

from kubetune_trainer.unsloth_backend import unsloth_importable

ENGINES = ("huggingface", "unsloth")


def engine_for(choice: str, system: Any, importable: bool | None = None) -> str:
    """spec.training.engine for the ENGINE parameter on this machine (`system`: the
    notebook's environment report)."""
    if choice == "auto":
        has = unsloth_importable() if importable is None else importable
        return "unsloth" if system.device == "cuda" and has else "huggingface"
    if choice not in ENGINES:
        raise ValueError(f"ENGINE must be auto, huggingface or unsloth, not {choice!r}")
    return choice
