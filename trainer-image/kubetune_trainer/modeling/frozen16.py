"""Frozen weights stored in bf16 when a CPU job trains in bf16 autocast.

On the CPU the Trainer runs bf16 autocast over fp32 weights. Autocast caches its bf16
copies only of weights that require grad, so every frozen weight was cast anew at each use,
forward and backward, and its bf16 copy was kept for backward beside the fp32 original:
`aten::copy_` was a quarter of a training step (bench/findings.md). Under LoRA the base is
frozen, so it is stored in bf16 once: autocast's matmuls see the very same bf16 weights as
before (same numbers), with no casts and half the bytes. The loader reads such a job's
checkpoint in its own dtype (`dtype="auto"`): a bf16 base makes no fp32 copy at load, and
apply() puts everything that is not a frozen Linear or Embedding back in fp32, exactly.

What is cast: every frozen fp32 `nn.Linear` (the base's projections beside their LoRA
layers, the lm_head) and `nn.Embedding`; trainable parameters (LoRA, modulesToSave) and
norms stay fp32. With a 4-bit or 8-bit base only the embeddings and the head are left to
cast: bitsandbytes layers are not plain Linear layers.

Outside autocast (generate, a plain forward) a cast Linear runs in bf16 on a bf16 copy of
its input and returns the input's dtype; an embedding always returns fp32 rows, so the
residual stream keeps its precision either way. One row (decoding one sequence) goes
through `torch.mv`: oneDNN's bf16 matmul has a fixed cost per call that made single-sequence
decoding 1.19x slower than fp32 weights, where mv is on par (bench/findings.md).

peft's prepare_model_for_kbit_training upcasts bf16 parameters to fp32 and
get_peft_model freezes the base, so apply() runs after both (loader.attach_lora).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kubetune_api import memory
from kubetune_api.spec import FineTuneJobSpec

ENABLED = True  # the benchmarks turn it off to measure what it saves


def wanted(spec: FineTuneJobSpec, precision: str, device: str) -> bool:
    """A CPU job in bf16 whose frozen weights the memory estimate counts at 2 bytes."""
    return ENABLED and device == "cpu" and memory.dense_bytes(spec, precision, device) == 2


def _autocast(x: torch.Tensor) -> bool:
    return torch.is_autocast_enabled(x.device.type)


class Linear16(torch.nn.Linear):
    """A frozen Linear whose weight is bf16; outside autocast it computes in bf16 too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _autocast(x) or x.dtype == self.weight.dtype:
            return F.linear(x, self.weight, self.bias)
        if x.numel() == x.shape[-1]:  # one row: a matrix-vector product
            y = torch.mv(self.weight, x.reshape(-1).to(self.weight.dtype))
            y = y if self.bias is None else y + self.bias
            return y.to(x.dtype).view(*x.shape[:-1], -1)
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias).to(x.dtype)


class Embedding16(torch.nn.Embedding):
    """A frozen embedding stored in bf16 that returns fp32 rows (the residual stream's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).float()


CLASSES: dict[type, type] = {torch.nn.Linear: Linear16, torch.nn.Embedding: Embedding16}


def _weight_and_bias(m: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in (m.weight, getattr(m, "bias", None)) if p is not None]


def apply(model: Any) -> int:
    """Store every frozen Linear and Embedding weight in bf16 and everything else in fp32
    (the base may have been loaded in bf16 or fp16); bytes saved against fp32."""
    stored: dict[int, int] = {}  # id -> numel: a tied head shares its embedding's weight
    for m in model.modules():
        new_class = CLASSES.get(type(m))
        own = _weight_and_bias(m) if new_class else []
        if own and not any(p.requires_grad for p in own):
            for p in own:
                if p.dtype.is_floating_point:
                    p.data = p.data.to(torch.bfloat16)
                    stored[id(p)] = p.numel()
            m.__class__ = new_class
            continue
        # The rest as an fp32 load leaves it: norms, trainable copies, biases, buffers.
        for store in (m._parameters, m._buffers):
            for t in store.values():
                if t is not None and t.dtype in (torch.bfloat16, torch.float16):
                    t.data = t.data.float()
    return 2 * sum(stored.values())
