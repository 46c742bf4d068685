"""The optional Unsloth engine (`spec.training.engine: unsloth`) for 4-bit LoRA on NVIDIA GPUs.

The mapping from a FineTuneJob to Unsloth's parameters is pure (and tested on any
machine); loading is real Unsloth code behind a preflight that refuses, with the
option to change and the fallback, wherever Unsloth cannot run.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from kubetune_api.spec import FineTuneJob

from .errors import ConfigError

FALLBACK = "set spec.training.engine: huggingface (the default stack runs everywhere)"
_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def unsloth_importable() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def preflight(job: FineTuneJob, *, cuda_available: bool, importable: bool) -> None:
    """Refuse settings Unsloth cannot run, before anything is loaded."""
    spec = job.spec
    if spec.training.engine != "unsloth":
        return
    problems: list[str] = []
    if not cuda_available:
        problems.append("Unsloth needs an NVIDIA CUDA GPU and none is visible")
    if not importable:
        problems.append("the `unsloth` package is not installed (pip install unsloth)")
    if spec.model.task != "causal_lm":
        problems.append(f"Unsloth trains causal LMs, not model.task {spec.model.task!r}")
    if spec.quantization.mode == "4bit" and spec.quantization.quant_type != "nf4":
        problems.append("Unsloth's 4-bit path is NF4 only (quantization.quantType: nf4)")
    if spec.model.gguf_file:
        problems.append("Unsloth cannot start from a GGUF file (model.ggufFile)")
    if spec.training.precision == "fp32":
        problems.append("Unsloth trains in bf16/fp16, not training.precision fp32")
    if problems:
        raise ConfigError(
            "spec.training.engine: unsloth cannot run here: "
            + "; ".join(problems)
            + f"; {FALLBACK}"
        )


def load_kwargs(
    job: FineTuneJob, location: str | None = None, tokenizer_location: str | None = None
) -> dict[str, Any]:
    """FastLanguageModel.from_pretrained(**kwargs) for this spec.

    `location` / `tokenizer_location` are where loader.resolve_base put the base and the
    tokenizer (an s3:// tokenizer is a local copy by then); without them, the spec's own.
    """
    spec = job.spec
    quant = spec.quantization.mode
    kwargs: dict[str, Any] = {
        "model_name": location or spec.model.base,
        "max_seq_length": spec.dataset.max_seq_length,
        # None lets Unsloth pick bf16 on Ampere+ and fp16 before: what "auto" means here.
        "dtype": _DTYPES.get(spec.training.precision),
        "load_in_4bit": quant == "4bit",
        "load_in_8bit": quant == "8bit",
        "full_finetuning": False,
        "trust_remote_code": spec.model.trust_remote_code,
    }
    if spec.model.revision:
        kwargs["revision"] = spec.model.revision
    tokenizer = tokenizer_location or spec.model.tokenizer
    if tokenizer and tokenizer != kwargs["model_name"]:
        kwargs["tokenizer_name"] = tokenizer
    return kwargs


def peft_kwargs(job: FineTuneJob) -> dict[str, Any]:
    """FastLanguageModel.get_peft_model(model, **kwargs) for this spec."""
    spec = job.spec
    adapter = spec.adapter
    checkpointing = spec.training.gradient_checkpointing
    return {
        "r": adapter.r,
        "target_modules": list(adapter.target_modules),
        "lora_alpha": adapter.alpha,
        "lora_dropout": adapter.dropout,
        "bias": adapter.bias,
        "modules_to_save": list(adapter.modules_to_save) or None,
        # Unsloth's own offloaded checkpointing is its main memory lever; "off" is honoured.
        "use_gradient_checkpointing": False if checkpointing == "off" else "unsloth",
        "random_state": spec.training.seed,
        "max_seq_length": spec.dataset.max_seq_length,
        "use_rslora": False,
        "loftq_config": None,
    }


def load_model(
    job: FineTuneJob, location: str | None = None, tokenizer_location: str | None = None
) -> tuple[Any, Any]:  # pragma: no cover - needs a CUDA GPU
    """Load base + LoRA through Unsloth; returns (peft model, tokenizer).

    `location` / `tokenizer_location`: the local folders (or hub ids) the engine resolved
    the base and the tokenizer to (loader.resolve_base fetches s3://, builds builtin:).
    """
    import torch

    preflight(job, cuda_available=torch.cuda.is_available(), importable=unsloth_importable())
    from unsloth import FastLanguageModel

    kwargs = load_kwargs(job, location, tokenizer_location)
    if kwargs["dtype"] is not None:
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    model, tokenizer = FastLanguageModel.from_pretrained(**kwargs)
    model = FastLanguageModel.get_peft_model(model, **peft_kwargs(job))
    return model, tokenizer
