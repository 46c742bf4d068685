"""The notebook's first cells: this machine, the quantization choice, the prepared data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune_api.spec import FineTuneJob
from kubetune_trainer.records import PreparedDataset

from .display import GIB, show


# -- environment and job -------------------------------------------------------------------
def environment_text(system: Any) -> str:
    """GPU (or CPU) and its free memory, then library versions; on a CPU: slow, and why."""
    free, total = system.memory_available_bytes / GIB, system.memory_total_bytes / GIB
    if system.device == "cuda":
        head = (
            f"GPU: {system.device_name} x{system.device_count}, {free:.1f} of {total:.1f} GiB "
            f"GPU memory free, bf16 {'yes' if system.bf16_supported else 'no'}"
        )
    else:
        head = (
            f"No GPU: CPU {system.device_name} with {system.cpu_count} cores, {free:.1f} of "
            f"{total:.1f} GiB RAM free.\nTraining will run on the CPU and be slow: fine for "
            "builtin:tiny-llama or a ~100M model, far too slow for an 8B model (use a GPU "
            "runtime; in Colab: Runtime > Change runtime type > GPU)."
        )
    libs = "\n".join(f"  {k:<14}{v}" for k, v in system.versions.items())
    return f"{head}\npython {system.python}\n{libs}"


def environment() -> Any:
    """The trainer's system report (the one `kubetune run` logs), displayed."""
    from kubetune_trainer.modeling import hardware

    system = hardware.system_report()
    show(environment_text(system))
    return system


def quantization_for(choice: str, system: Any) -> str:
    """The QUANTIZATION parameter: auto = 4-bit QLoRA on a GPU, full weights on a CPU."""
    if choice == "auto":
        return "4bit" if system.device == "cuda" else "none"
    if choice not in ("4bit", "8bit", "none"):
        raise ValueError(f"QUANTIZATION must be auto, 4bit, 8bit or none, not {choice!r}")
    return choice


def quantization_spec(mode: str) -> dict[str, Any]:
    """spec.quantization for a mode: NF4 with double quantization for 4-bit (QLoRA)."""
    if mode == "4bit":
        return {"mode": "4bit", "quantType": "nf4", "doubleQuant": True, "computeDtype": "auto"}
    return {"mode": mode}


# -- dataset -------------------------------------------------------------------------------
@dataclass
class DatasetView:
    prepared: PreparedDataset
    base: Any  # modeling.loader.BaseModel: where the tokenizer (and later the model) lives
    tokenizer: Any
    example: tuple[str, str]  # (prompt, completion) of the first training record, as trained

    def text(self) -> str:
        p, s = self.prepared, self.prepared.stats
        return "\n".join(
            [
                f"format {p.format} ({p.kind} records), fingerprint {p.fingerprint}",
                f"rows read {s.read}, kept {s.kept}, skipped {s.skipped} (bad rows), "
                f"filtered {s.filtered}, truncated {s.truncated}",
                f"split: {len(p.train)} train / {len(p.validation)} validation (held out)",
                *[f"  problem: {x}" for x in s.problems[:5]],
                "",
                "example prompt (masked from the loss):",
                self.example[0],
                "example completion (the loss target):",
                self.example[1],
            ]
        )


def dataset(job: FineTuneJob) -> DatasetView:
    """Read, validate and split the data as `kubetune run` does; show counts and one example.

    The example is rendered with the base model's own tokenizer and the job's template, so
    it is the exact text the model trains on.
    """
    from kubetune_trainer.data import prepare
    from kubetune_trainer.data.templates import messages_of, render
    from kubetune_trainer.engine.setup import training_texts
    from kubetune_trainer.modeling import loader

    prepared = prepare(job)
    ds = job.spec.dataset
    # builtin:tiny-llama trains its tokenizer on the prepared text (cached: run_job reuses it).
    base = loader.resolve_base(job.spec, training_texts(prepared))
    tokenizer = loader.load_tokenizer(job.spec, base)
    example = render(messages_of(prepared.train[0], ds.system_prompt), tokenizer, ds.template)
    view = DatasetView(prepared, base, tokenizer, example)
    show(view.text())
    return view
