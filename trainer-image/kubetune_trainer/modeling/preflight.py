"""Memory preflight: will this job fit? Computed from the model config, never the weights.

The arithmetic lives in kubetune_api.memory (so the operator can run it before creating
the Job); here the parameters are counted exactly on a meta-device model (no memory).
The estimate adds: weights by quantization, LoRA parameters with their gradients and
AdamW state, activations (seq x micro batch x hidden x layers, with or without gradient
checkpointing), logits and a fixed runtime overhead, per rank after ZeRO sharding and
CPU offload (distributed.deepspeed, distributed.cpuOffload).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from kubetune_api import memory
from kubetune_api.memory import GIB, HIGH_WATER, MemoryEstimate, ModelNumbers
from kubetune_api.spec import FineTuneJobSpec
from kubetune_trainer.errors import OutOfMemoryError

log = logging.getLogger(__name__)
__all__ = ["GIB", "HIGH_WATER", "MemoryEstimate", "count_params", "estimate", "preflight"]


def count_params(config: Any, targets: list[str], task: str) -> tuple[int, int, int, int]:
    """(total, quantizable, lora_per_rank, vocab) from a meta-device model: no memory used."""
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
    )

    cls = {
        "sequence_classification": AutoModelForSequenceClassification,
        "masked_lm": AutoModelForMaskedLM,
    }.get(task, AutoModelForCausalLM)
    with torch.device("meta"):
        model = cls.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    quantizable = lora_per_rank = 0
    all_linear = targets == ["all-linear"]
    heads = ("lm_head", "classifier", "predictions.decoder")  # output layers stay dense
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or name.endswith(heads):
            continue
        quantizable += mod.weight.numel()
        leaf = name.rsplit(".", 1)[-1]
        if all_linear or leaf in targets or name in targets:
            lora_per_rank += mod.in_features + mod.out_features
    return total, quantizable, lora_per_rank, getattr(config, "vocab_size", 0) or 0


def numbers(config: Any, targets: list[str], task: str) -> ModelNumbers:
    total, quantizable, per_rank, vocab = count_params(config, targets, task)
    return ModelNumbers(
        params_total=total,
        params_quantizable=quantizable,
        lora_per_rank=per_rank,
        vocab=vocab,
        hidden=getattr(config, "hidden_size", 0) or 0,
        layers=getattr(config, "num_hidden_layers", 0) or 0,
        heads=getattr(config, "num_attention_heads", 1) or 1,
    )


def estimate(
    spec: FineTuneJobSpec,
    config: Any,
    precision: str,
    available: int,
    device: str,
    gradient_checkpointing: bool,
) -> MemoryEstimate:
    n = numbers(config, spec.adapter.target_modules, spec.model.task)
    return memory.estimate_bytes(spec, n, precision, available, device, gradient_checkpointing)


def preflight(
    spec: FineTuneJobSpec, config: Any, precision: str, available: int, device: str
) -> MemoryEstimate:
    """The estimate with gradient checkpointing decided; OutOfMemoryError if it cannot fit."""
    n = numbers(config, spec.adapter.target_modules, spec.model.task)
    try:
        return memory.check(spec, n, precision, available, device)
    except memory.DoesNotFit as exc:
        raise OutOfMemoryError(str(exc)) from None
