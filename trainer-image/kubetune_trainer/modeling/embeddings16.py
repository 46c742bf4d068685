"""Frozen embeddings in bf16 beside a 4-bit body when the job trains in bf16.

4-bit quantization covers the Linear layers only: on a 1.1B model with a 32k untied
vocabulary the fp32 input embedding and lm_head are 0.52 GB, as much as the whole 4-bit
body. Both are frozen under LoRA, and under bf16 autocast the lm_head matmul already runs
on a bf16 copy of its weight (made anew every forward): storing it in bf16 gives the same
logits for half the bytes. The embedding lookup returns bf16-rounded rows, cast back to the
weight's old dtype so the residual stream keeps its precision.

peft's prepare_model_for_kbit_training upcasts every bf16 parameter to fp32, so the loader
casts after it (apply()).
"""

from __future__ import annotations

from typing import Any

import torch

ENABLED = True  # the memory benchmark turns it off to measure what it saves


def wanted(precision: str) -> bool:
    """bf16 embeddings for a quantized base (the loader's caller) trained in bf16."""
    return ENABLED and precision == "bf16"


def _modules(model: Any) -> list[torch.nn.Module]:
    """The input embedding and the lm_head (both, when tied: they share one weight)."""
    out = []
    for get in ("get_input_embeddings", "get_output_embeddings"):
        m = getattr(model, get, lambda: None)()
        if m is not None and type(m) in (torch.nn.Embedding, torch.nn.Linear):
            out.append(m)
    return out


def _outside_autocast(x: torch.Tensor) -> bool:
    return not torch.is_autocast_enabled(x.device.type)


def _head_input(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Outside autocast (generate, plain eval) the bf16 head needs a bf16 input."""
    x = args[0]
    return (x.to(module.weight.dtype), *args[1:]) if _outside_autocast(x) else None


def _head_output(_m: torch.nn.Module, _args: Any, out: torch.Tensor) -> torch.Tensor:
    # Under autocast the logits were bf16 before too; outside it they were fp32.
    return out.float() if _outside_autocast(out) else out


def _embedding_output(_m: torch.nn.Module, _args: Any, out: torch.Tensor) -> torch.Tensor:
    return out.float()


def apply(model: Any) -> int:
    """Store the frozen fp32 input/output embeddings in bf16; bytes saved."""
    saved = 0
    cast: set[int] = set()
    for m in _modules(model):
        w = m.weight
        if id(w) not in cast:
            if w.dtype != torch.float32 or w.requires_grad:
                continue
            w.data = w.data.to(torch.bfloat16)
            cast.add(id(w))
            saved += w.numel() * 2
        if isinstance(m, torch.nn.Embedding):
            m.register_forward_hook(_embedding_output)
        else:
            m.register_forward_pre_hook(_head_input)
            m.register_forward_hook(_head_output)
    return saved
