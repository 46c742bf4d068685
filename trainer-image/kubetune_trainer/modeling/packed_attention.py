"""Attention inside each packed example only, for position-id packing on the CPU.

Position-id packing puts several examples in one row, their positions restarting at 0.
transformers' sdpa path then builds a dense block-diagonal causal mask over the whole row and
SDPA computes every block of it, the masked ones too: at 2048-token rows holding ~12
examples, most of the square is wasted work (attention alone was 291 ms per layer, forward +
backward, for 4 such rows; bench/findings.md). Here each example gets a causal attention of
its own (modeling/segment_attention.py: the CPU flash kernel forward, a backward of batched
matmuls, the flash kernel's backward being ~6x its forward). The result is the masked call's.

Registered with transformers as the attention implementation "kubetune_packed". Its mask
function builds no mask when there is no padding mask (packed training rows), and is
transformers' own sdpa mask otherwise (padded evaluation batches, generation). Anything
that is not a packed row (a mask, a cache offset, dropout, a non-causal module) goes to
transformers' own sdpa attention. Selected by the sft recipe for causal LMs on the CPU with
`packing: position_ids`, `attnImplementation: auto` and rows of at least MIN_ROW tokens;
GPUs have flash-attention's varlen kernels for this (`attnImplementation:
flash_attention_2`).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import (
    AttentionMaskInterface,
    find_packed_sequence_indices,
    sdpa_mask,
)

from kubetune_trainer.modeling import segment_attention

NAME = "kubetune_packed"
# Rows at least this long. Measured (bench/findings.md, "Attention per example with its own
# backward"): whole epochs at rows of 512 ran 1.08-1.15x faster than the dense mask (the 30M
# model and TinyLlama-1.1B's shape), rows of 2048 1.11x faster than per-example flash
# attention. Shorter rows were not measured and keep the dense mask.
MIN_ROW = 512


def segment_lengths(position_ids: torch.Tensor | None, batch: int, length: int) -> list[int] | None:
    """Lengths of the examples of the flattened (batch x length) rows, in order, or None if
    every row holds one sequence (nothing to split). Examples are where transformers' own
    masks find them (find_packed_sequence_indices: wherever a position does not follow the
    one before)."""
    if position_ids is None or position_ids.dim() != 2 or position_ids.shape[1] != length:
        return None
    if position_ids.shape[0] not in (1, batch):
        return None
    seq = find_packed_sequence_indices(position_ids.expand(batch, length))
    if seq is None:
        return None
    # Each row counts its examples from 0: offset the rows so no two rows share an id.
    ids = seq + torch.arange(batch, device=seq.device)[:, None] * length
    return torch.unique_consecutive(ids.reshape(-1), return_counts=True)[1].tolist()  # type: ignore[no-any-return]


def attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """query [batch, heads, L, dim], key/value [batch, kv_heads, L, dim] -> [batch, L, heads,
    dim], as transformers' sdpa_attention_forward returns it."""
    batch, length = query.shape[0], query.shape[2]
    lengths = None
    if (
        attention_mask is None
        and key.shape[2] == length
        and not (dropout and module.training)
        and getattr(module, "is_causal", True)
        and kwargs.get("is_causal") is not False
    ):
        lengths = segment_lengths(kwargs.get("position_ids"), batch, length)
    if lengths is None:
        return sdpa_attention_forward(  # type: ignore[no-any-return]
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return segment_attention.attention(query, key, value, lengths, scale), None


def mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """No mask for rows without padding (attention() splits them by position); transformers'
    sdpa mask for everything else."""
    plain = (
        kwargs.get("attention_mask") is None
        and kwargs.get("q_length") == kwargs.get("kv_length")
        and not kwargs.get("q_offset")
        and not kwargs.get("kv_offset")
    )
    return None if plain else sdpa_mask(*args, **kwargs)


def register() -> str:
    """Make NAME known to transformers (idempotent); returns it."""
    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, mask)
    return NAME


def use(model: Any, attn_implementation: str, packing: str, row: int) -> bool:
    """Switch `model` (PEFT-wrapped or not) to NAME if it trains packed rows of `row` tokens
    (at least MIN_ROW) on the CPU with transformers' sdpa chosen for it and no sliding
    window, `attnImplementation: auto`, `packing: position_ids` (which data.collate's
    packing plan resolves only for the causal LMs known to keep packed examples apart by
    position ids). True if switched."""
    if attn_implementation != "auto" or packing != "position_ids" or row < MIN_ROW:
        return False
    if torch.cuda.is_available():
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False  # eager or a kernel chosen for it: left as it is
    window = getattr(config, "sliding_window", None)
    if window and getattr(config, "use_sliding_window", True) is not False:
        return False
    base.set_attn_implementation(register())
    return True
