"""LoRA dropout with a cheap mask on the CPU.

peft puts an nn.Dropout in front of every LoRA A matrix. On the CPU that is one
`bernoulli_` draw per element of the layer's input, into a float mask that is also what
backward keeps: at TinyLlama-1.1B's shape (LoRA on q and v, dropout 0.05, rows of 4 x 512)
those draws were 10% of a training step (bench/findings.md, "One training step at
TinyLlama-1.1B's shape").

Here the mask comes from 16 random bits per element, drawn as 64-bit words (one generator
call per four elements) and compared with a threshold; backward keeps it as a bool (one byte
per element). Each element is dropped independently with p rounded to 1/65536 and the kept
ones are scaled by 1 / (1 - that p), so the expectation is exactly the input, as with
nn.Dropout. The bits come from torch's default generator, which `training.seed` seeds and
which gradient checkpointing and resume restore, so recomputed and resumed steps draw the
same masks. Other devices keep nn.Dropout's own kernel (fused on GPUs).
"""

from __future__ import annotations

from typing import Any

import torch

LEVELS = 1 << 16  # 16 bits per element: p is rounded to a multiple of 1/65536


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """(bool mask, True where kept, of `shape`; the p it was drawn with)."""
    n = shape.numel()
    drop = min(max(round(p * LEVELS), 0), LEVELS - 1)
    # random_(from, to) over (almost) the whole int64 range: every 16-bit quarter is uniform.
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(2**63), 2**63 - 1)
    bits = words.view(torch.int16)[:n].view(shape)
    return bits >= drop - LEVELS // 2, drop / LEVELS


class _Masked(torch.autograd.Function):
    """x * keep * scale, keeping only the bool mask for backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


class CheapDropout(torch.nn.Dropout):
    """nn.Dropout whose CPU training mask is keep_mask's (a subclass, so code that checks
    for nn.Dropout still finds one)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        keep, p = keep_mask(x.shape, self.p, x.device)
        return _Masked.apply(x, keep, 1.0 / (1.0 - p))  # type: ignore[no-any-return]


def install(model: torch.nn.Module) -> int:
    """Swap the plain nn.Dropout of every LoRA layer of `model` (peft's `lora_dropout`) for
    CheapDropout; returns how many were swapped."""
    swapped = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, torch.nn.ModuleDict):
            continue
        for key, drop in list(drops.items()):
            if type(drop) is torch.nn.Dropout and drop.p > 0:
                drops[key] = CheapDropout(drop.p)
                swapped += 1
    return swapped
