"""Saving a LoRA adapter from ZeRO-3: gather on every rank, write on rank 0.

ZeRO-3 keeps only a slice of each large parameter on each rank (small ones below
stage3_param_persistence_threshold stay whole everywhere). Rank 0 saving alone would
write empty slices, and gathering alone would hang: every rank must enter the gather.
"""

from __future__ import annotations

from typing import Any

from .runtime import is_main_process


def zero3_enabled() -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled

    return bool(is_deepspeed_zero3_enabled())


def adapter_state_dict(model: Any) -> dict[str, Any] | None:
    """The adapter's full weights (PEFT key names) on rank 0, {} on other ranks.

    None when ZeRO-3 is off: the model's own save_pretrained is right then. Call it on
    every rank (it is a collective); only the trainable (adapter) parameters are
    gathered, never the frozen base.
    """
    if not zero3_enabled():
        return None
    import deepspeed
    from peft import get_peft_model_state_dict

    params = [p for p in model.parameters() if p.requires_grad]
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        if not is_main_process():
            return {}
        state = get_peft_model_state_dict(model)
        # Copies: the gathered storage is released when the context exits.
        return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
