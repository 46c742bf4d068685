"""The notebook's model cell: run_job's own start-up (load_all), shown with its preflight."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubetune_api.spec import FineTuneJob

from .display import GIB, html_table, pre, say, show
from .inputs import DatasetView

if TYPE_CHECKING:  # engine.setup imports torch: not at import time
    from kubetune_trainer.engine.setup import Loaded


# -- model ---------------------------------------------------------------------------------
@dataclass
class ModelView:
    job: FineTuneJob  # the job it was loaded for: train() refuses another one
    loaded: Loaded  # load_all's result: the very object run_job trains
    quantized_layers: dict[str, int]  # bitsandbytes Linear layers by kind: {"4-bit": 14, ...}
    in_use: tuple[str, int]  # ("CUDA allocated" | "process RSS", bytes) after the load
    trained: bool = False  # set by train(): a model trains once, a rerun loads it afresh

    def summary_rows(self) -> list[list[str]]:
        ld, q = self.loaded, self.job.spec.quantization
        share = 100 * ld.trainable / max(ld.total, 1)
        where, used = self.in_use
        mode = q.mode
        if mode == "4bit":
            mode += f" ({q.quant_type}, double quantization {'on' if q.double_quant else 'off'})"
        rows = [
            ["base", ld.base.display],
            ["quantization", mode],
            ["precision", f"{ld.precision} on {ld.system.device} ({ld.system.device_name})"],
            ["trainable parameters", f"{ld.trainable:,} of {ld.total:,} ({share:.3f}%)"],
            ["memory in use", f"{where} {used / GIB:.2f} GiB after the load"],
        ]
        if self.quantized_layers:
            layers = ", ".join(f"{n} {kind}" for kind, n in self.quantized_layers.items())
            rows.insert(2, ["quantized Linear layers", f"{layers} (bitsandbytes)"])
        return rows

    def preflight_rows(self) -> list[list[str]]:
        m = self.loaded.memory
        gc = "on" if m.gradient_checkpointing else "off"
        return [
            ["weights", _gib(m.weights), f"{m.params_total / 1e6:.1f}M parameters"],
            ["LoRA + gradients + optimizer", _gib(m.adapter_and_optimizer), ""],
            ["activations", _gib(m.activations), f"gradient checkpointing {gc}"],
            ["overhead", _gib(m.overhead), "framework, CUDA context"],
            ["total estimate", _gib(m.total), f"{m.ratio:.0%} of available"],
            ["available", _gib(m.available), f"free on the {self.loaded.system.device}"],
        ]

    def text(self) -> str:
        width = max(len(k) for k, _ in self.summary_rows())
        return "\n".join(
            [
                *(f"{k + ':':<{width + 1}} {v}" for k, v in self.summary_rows()),
                f"memory preflight: {self.loaded.memory.table()}",
                *self.loaded.memory.notes,
            ]
        )

    def page(self) -> str:
        return (
            html_table(["", ""], self.summary_rows())
            + "<p><b>Memory preflight</b> (estimate against the device's available memory)</p>"
            + html_table(["", "GiB", ""], self.preflight_rows())
            + "".join(pre(note) for note in self.loaded.memory.notes)
        )


def _gib(n: int) -> str:
    return f"{n / GIB:.2f}"


def quantized_linear_counts(model: Any, mode: str) -> dict[str, int]:
    """bitsandbytes Linear4bit / Linear8bitLt modules in the model (the frozen base layers)."""
    if mode == "none":
        return {}
    import bitsandbytes as bnb

    kinds = {"4-bit": bnb.nn.Linear4bit, "8-bit": bnb.nn.Linear8bitLt}
    return {k: sum(isinstance(m, cls) for m in model.modules()) for k, cls in kinds.items()}


def memory_in_use(device: str) -> tuple[str, int]:
    """CUDA memory allocated by tensors on a GPU; the process's resident memory on a CPU."""
    if device == "cuda":
        import torch

        return "CUDA allocated", torch.cuda.memory_allocated()
    import psutil

    return "process RSS", psutil.Process().memory_info().rss


def load_model(job: FineTuneJob, data: DatasetView) -> ModelView:
    """run_job's own start-up, load_all: checks, preflight, then the weights and LoRA.

    The hardware checks and the memory preflight run from the config before any weight is
    read (a model that does not fit stops here with recommendations); then the base is
    loaded, quantized when the job says so, and LoRA is attached. train() trains this very
    object: nothing is loaded twice.
    """
    from kubetune_trainer.engine.setup import load_all, offline_env

    offline_env(job)  # as run_job does before it loads
    loaded = load_all(job, data.prepared, say)
    mode = job.spec.quantization.mode
    view = ModelView(
        job,
        loaded,
        quantized_linear_counts(loaded.model, mode),
        memory_in_use(loaded.system.device),
    )
    show(view.text(), view.page())
    return view
