"""Memory preflight: will this job fit? Computed from the model config, never the weights.

The estimate counts parameters on the meta device (no memory), then adds:
weights by quantization, LoRA parameters with their gradients and AdamW state,
activations (seq x micro batch x hidden x layers, with or without gradient
checkpointing), logits, and a fixed runtime overhead. Numbers are deliberately
simple and a little pessimistic: refusing at start beats an OOM at step 900.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from kubetune_api.spec import FineTuneJobSpec
from kubetune_trainer.errors import OutOfMemoryError

log = logging.getLogger(__name__)
GIB = 1024**3
HIGH_WATER = 0.80  # above this share of memory, gradient checkpointing: auto turns on
_OVERHEAD = {"cpu": int(1.0 * GIB), "cuda": int(1.5 * GIB)}  # framework, CUDA context


@dataclass
class MemoryEstimate:
    params_total: int
    params_quantizable: int  # Linear weights inside the blocks (what bitsandbytes packs)
    params_lora: int
    weights: int
    adapter_and_optimizer: int
    activations: int
    overhead: int
    available: int
    gradient_checkpointing: bool
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.weights + self.adapter_and_optimizer + self.activations + self.overhead

    @property
    def ratio(self) -> float:
        return self.total / max(self.available, 1)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "ratio": round(self.ratio, 4)}

    def table(self) -> str:
        def g(n: int) -> str:
            return f"{n / GIB:.2f} GiB"

        return (
            f"weights {g(self.weights)} ({self.params_total / 1e6:.1f}M params), "
            f"LoRA+grads+optimizer {g(self.adapter_and_optimizer)} "
            f"({self.params_lora / 1e6:.2f}M trainable), activations {g(self.activations)} "
            f"(gradient checkpointing {'on' if self.gradient_checkpointing else 'off'}), "
            f"overhead {g(self.overhead)}: total {g(self.total)} of {g(self.available)} "
            f"available ({self.ratio:.0%})"
        )


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


def estimate(
    spec: FineTuneJobSpec,
    config: Any,
    precision: str,
    available: int,
    device: str,
    gradient_checkpointing: bool,
) -> MemoryEstimate:
    total, quantizable, per_rank, vocab = count_params(
        config, spec.adapter.target_modules, spec.model.task
    )
    dense_bytes = 2 if precision in ("bf16", "fp16") and device == "cuda" else 4
    mode = spec.quantization.mode
    if mode == "4bit":
        # 0.5 B/param plus absmax constants: fp32 per 64 values, or ~8-bit when double-quantized.
        per = 0.5 + (1 / 64 + 4 / (64 * 256) if spec.quantization.double_quant else 4 / 64)
        weights = int(quantizable * per + (total - quantizable) * dense_bytes)
    elif mode == "8bit":
        weights = int(quantizable * (1 + 4 / 4096) + (total - quantizable) * dense_bytes)
    else:
        weights = total * dense_bytes
    lora = per_rank * spec.adapter.r
    # fp32 LoRA weight + grad + AdamW exp_avg + exp_avg_sq = 16 B per trainable param.
    adapter_opt = lora * 16
    t = spec.training
    seq, mb = spec.dataset.max_seq_length, t.micro_batch_size
    hidden = getattr(config, "hidden_size", 0) or 0
    layers = getattr(config, "num_hidden_layers", 0) or 0
    heads = getattr(config, "num_attention_heads", 1) or 1
    act_bytes = 2 if precision in ("bf16", "fp16") else 4
    # Per layer (Korthikanti et al.): ~34·s·b·h half-precision bytes + 5·a·s²·b for eager
    # attention scores; sdpa avoids most of the s² term, so count it once, not per layer.
    per_layer = 17 * seq * mb * hidden * act_bytes
    scores = 5 * heads * seq * seq * mb * act_bytes // 2
    if gradient_checkpointing:
        activations = layers * seq * mb * hidden * act_bytes + per_layer + scores
    else:
        activations = layers * per_layer + scores
    if spec.model.task in ("causal_lm", "masked_lm"):
        activations += 2 * seq * mb * vocab * 4  # fp32 logits and their gradient
    return MemoryEstimate(
        params_total=total,
        params_quantizable=quantizable,
        params_lora=lora,
        weights=weights,
        adapter_and_optimizer=adapter_opt,
        activations=int(activations),
        overhead=_OVERHEAD.get(device, _OVERHEAD["cpu"]),
        available=available,
        gradient_checkpointing=gradient_checkpointing,
    )


def preflight(
    spec: FineTuneJobSpec, config: Any, precision: str, available: int, device: str
) -> MemoryEstimate:
    """The estimate with gradient checkpointing decided; OutOfMemoryError if it cannot fit."""
    gc_mode = spec.training.gradient_checkpointing
    est = estimate(spec, config, precision, available, device, gc_mode == "on")
    if gc_mode == "auto" and est.ratio > HIGH_WATER:
        est = estimate(spec, config, precision, available, device, True)
        est.notes.append(
            f"memory estimate above {HIGH_WATER:.0%} of available: gradient checkpointing "
            "turned on (training.gradientCheckpointing: auto)"
        )
    if est.ratio <= 1.0:
        return est
    raise OutOfMemoryError(
        f"the job does not fit in memory: {est.table()}. " + _recommend(spec, est)
    )


def _recommend(spec: FineTuneJobSpec, est: MemoryEstimate) -> str:
    tips = []
    if spec.quantization.mode != "4bit":
        tips.append(
            f"load the base in 4-bit (quantization.mode: 4bit; weights would take about "
            f"{est.params_total * 0.52 / GIB:.1f} GiB)"
        )
    if not est.gradient_checkpointing:
        tips.append("turn on gradient checkpointing (training.gradientCheckpointing: on)")
    if spec.training.micro_batch_size > 1:
        tips.append(
            "lower training.microBatchSize and raise training.gradientAccumulation "
            "to keep the effective batch"
        )
    if spec.dataset.max_seq_length > 512:
        tips.append("lower dataset.maxSeqLength")
    tips.append("or use a machine/GPU with more memory (resources.gpuType) or a smaller base")
    return "Recommendations: " + "; ".join(tips) + "."
