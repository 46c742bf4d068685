"""The causal-LM training loss without the full [tokens x vocab] logits tensor.

The model's own forward computes logits for every position (`lm_head` over all hidden
states) and then cross-entropy, although prompt and padding positions carry label -100
and contribute nothing. With a 49k vocabulary those logits (plus their fp32 copy and their
gradient) are the largest activation of a LoRA step. Here:

1. the model runs with `lm_head` turned into a pass-through for the call, so its
   "logits" are the final hidden states (the forward still goes through every wrapper:
   PEFT, DDP);
2. only positions whose shifted label is not -100 are kept (completion tokens);
3. `LinearCrossEntropy` computes the head and cross-entropy over chunks of those rows,
   and the gradient of the hidden states in the same pass, so no chunk's logits outlive
   its iteration and backward does no recomputation (the head weight is frozen: tied
   embeddings under LoRA).

The value is the model's own loss (transformers' ForCausalLMLoss): the sum over kept
positions divided by `num_items_in_batch` when the Trainer passes it to the model (the
gradient-accumulation fix), else the mean. Anything this does not know to be plain
`lm_head(hidden)` + ForCausalLMLoss falls back to the model's own loss (`lm_head_of`
returns None): other architectures (logit soft-capping, scaling), classification and
masked-LM heads, a trainable or adapted head, a head partitioned by ZeRO-3 or FSDP, label
smoothing.

The default (`fused`) since it measured faster end to end, not only leaner (bench/
findings.md, "The chunked loss by default"); `KUBETUNE_LOSS=model` is the model's own
loss, `select` only step 2 (the head on kept rows, one block).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from kubetune_trainer.errors import ConfigError
from kubetune_trainer.modeling.frozen16 import Linear16

IGNORE = -100
# Model types whose *ForCausalLM forward is exactly lm_head(last_hidden_state) followed by
# ForCausalLMLoss (no soft-capping or logit scaling). Checked against the model's own loss
# by tests/trainer/recipes/test_lm_loss.py.
PLAIN_HEAD = frozenset({"llama", "mistral", "qwen2", "qwen3"})
MODES = ("fused", "select", "model")
# Elements of one chunk's fp32 logits (64 MiB): 8k rows at an 8k vocabulary, 1365 at 49k.
CHUNK_ELEMENTS = 1 << 24


def mode() -> str:
    # The default: on a quiet machine, kubetune's default path ran 1.08x the tokens/s with it
    # at an 8k vocabulary and 1.59x at 49k (interleaved, 3 each; bench/findings.md), beside
    # the peak RSS it saves. KUBETUNE_LOSS=model is the model's own loss.
    value = os.environ.get("KUBETUNE_LOSS", "fused")
    if value not in MODES:
        raise ConfigError(f"KUBETUNE_LOSS={value!r}: use one of {', '.join(MODES)} (or unset it)")
    return value


def _base(model: Any) -> Any:
    """The transformers model under DDP/accelerate (`.module`) and PEFT wrappers."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def lm_head_of(model: Any) -> torch.nn.Linear | None:
    """The frozen plain Linear head of a supported causal LM, or None (use the model's loss)."""
    base = _base(model)
    config = getattr(base, "config", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD:
        return None
    if not type(base).__name__.endswith("ForCausalLM"):
        return None
    get_head = getattr(base, "get_output_embeddings", None)
    head = get_head() if get_head else None
    # type() is: a PEFT LoRA layer or another wrapper on the head is not a plain Linear
    # (frozen16's bf16-stored Linear is).
    if head is None or type(head) not in (torch.nn.Linear, Linear16):
        return None
    if any(p.requires_grad for p in head.parameters()):
        return None
    # ZeRO-3 (a DeepSpeed `ds_id`) or FSDP (DTensor) gather the weight only inside the
    # module's own forward; used after it, it is an empty or sharded placeholder.
    weight = head.weight
    if hasattr(weight, "ds_id") or weight.numel() != head.in_features * head.out_features:
        return None
    if type(weight.data).__name__ == "DTensor":
        return None
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None
    return head


@contextmanager
def hidden_states_out(head: torch.nn.Module) -> Iterator[None]:
    """Within the block, `head(x)` returns x (the model's logits are its hidden states)."""
    head.forward = lambda x: x  # type: ignore[method-assign]
    try:
        yield
    finally:
        del head.forward  # the class's forward again


class LinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(h_i @ W.T + b, y_i) over chunks of rows; d/dh computed in the forward pass.

    The head weight must not need a gradient (lm_head_of checks). The gradient of the
    hidden states is kept (rows x hidden, small) and scaled by the incoming gradient in
    backward, so nothing is recomputed and only one chunk of logits exists at a time.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        labels: torch.Tensor,
        chunk: int,
    ) -> torch.Tensor:
        need_grad = hidden.requires_grad
        grad = torch.empty_like(hidden) if need_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk):
            h, y = hidden[s : s + chunk].to(weight.dtype), labels[s : s + chunk]
            # Autocast applies when on; off (the loss is computed after the model's
            # autocast forward), a bf16 head (4-bit bases train with one) takes bf16 rows.
            logits = F.linear(h, weight, bias).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
            if grad is not None:
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                probs[torch.arange(y.shape[0], device=y.device), y] -= 1.0
                grad[s : s + chunk] = (probs.to(weight.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(grad if grad is not None else torch.empty(0))
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_out.to(grad.dtype), None, None, None, None


def chunk_rows(vocab: int) -> int:
    return max(256, min(8192, CHUNK_ELEMENTS // max(vocab, 1)))


def loss_from_hidden(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    head: torch.nn.Linear,
    num_items_in_batch: Any = None,
    fused: bool = True,
) -> torch.Tensor:
    """transformers' ForCausalLMLoss(head(hidden), labels), computed on kept rows only."""
    shifted = F.pad(labels, (0, 1), value=IGNORE)[..., 1:]
    y = shifted.reshape(-1).to(hidden.device)
    rows = (y != IGNORE).nonzero().squeeze(1)
    h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows)
    y = y.index_select(0, rows)
    if fused:
        total = LinearCrossEntropy.apply(
            h, head.weight, head.bias, y, chunk_rows(head.out_features)
        )
    else:
        total = F.cross_entropy(head(h.to(head.weight.dtype)).float(), y, reduction="sum")
    if num_items_in_batch is None:
        return total / y.numel()  # the mean over kept rows (nan when none, as in torch)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def causal_lm_loss(
    model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None
) -> torch.Tensor | None:
    """The training loss of a batch with labels, or None when the model's own loss must be
    used (unsupported model, no labels, KUBETUNE_LOSS=model)."""
    chosen = mode()
    head = lm_head_of(model) if chosen != "model" else None
    if head is None or inputs.get("labels") is None:
        return None
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    with hidden_states_out(head):
        out = model(**forward)
    hidden = out["logits"] if isinstance(out, dict) else out[0]
    if hidden.shape[-1] != head.in_features:  # a forward that did not call lm_head: logits
        shifted = F.pad(inputs["labels"], (0, 1), value=IGNORE)[..., 1:].to(hidden.device)
        flat = hidden.float().reshape(-1, hidden.shape[-1])
        reduction = "mean" if num_items_in_batch is None else "sum"
        loss = F.cross_entropy(flat, shifted.reshape(-1), reduction=reduction)
        return loss if num_items_in_batch is None else loss / num_items_in_batch
    return loss_from_hidden(hidden, inputs["labels"], head, num_items_in_batch, chosen == "fused")
