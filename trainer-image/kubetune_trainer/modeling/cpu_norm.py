"""RMSNorm in fewer passes over memory, for the CPU.

transformers' Llama-family RMSNorm is six elementwise ops (cast to fp32, square, mean,
rsqrt, scale, cast back, weight) and autograd replays a dozen more in backward, each a
pass over a [tokens, hidden] tensor, with fp32 copies of the input kept for backward. On
a 2-core CPU that is memory traffic, not arithmetic (bench/findings.md, "RMSNorm in fewer
passes"). Here:

    forward:  r = rsqrt(mean(x^2) + eps)  (one reading pass, fp32 accumulation)
              y = weight * (x * r rounded to x's dtype)    (two passes)
    backward: dh = dy * weight;  c = sum(dh * x)
              dx = dh * r - x * r^3 * c / hidden           (fp32, rounded once)

the same arithmetic as transformers' (to fp32 rounding: the mean of squares is summed in
another order) keeping only x and r for backward. Installed per module (not on the class)
for the families whose RMSNorm is exactly that formula, on the CPU.
"""

from __future__ import annotations

import types
from typing import Any

import torch

# RMSNorm classes whose forward is `weight * (x.float() * rsqrt(mean(x^2) + eps)).to(x.dtype)`
# (checked against transformers' source in the tests).
FAMILIES = frozenset({"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm"})


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        hidden = x.shape[-1]
        r = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)
        r = r.square_().div_(hidden).add_(eps).rsqrt_()
        # fp32 arithmetic, rounded once into x's dtype: transformers' `.to(input_dtype)`.
        h = torch.mul(x, r, out=torch.empty_like(x))
        out = h.mul_(weight) if weight.dtype == x.dtype else weight * h
        ctx.save_for_backward(x, weight, r)
        return out

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight, r = ctx.saved_tensors
        dx = dw = None
        dh = (dy * weight).to(x.dtype)  # the gradient of the rounded h, as autograd's cast
        if ctx.needs_input_grad[0]:
            c = (dh * x).sum(-1, keepdim=True, dtype=torch.float32)
            dx32 = torch.mul(dh, r)  # fp32
            dx = dx32.addcmul_(x, r.pow(3).mul_(c).div_(-x.shape[-1])).to(x.dtype)
        if ctx.needs_input_grad[1]:
            h = torch.mul(x, r, out=torch.empty_like(x))
            dw = (dy * h).reshape(-1, x.shape[-1]).sum(0, dtype=torch.float32).to(weight.dtype)
        return dx, dw, None


def _forward(self: torch.nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    if hidden_states.device.type != "cpu":
        return type(self).forward(self, hidden_states)  # type: ignore[no-any-return]
    return _RMSNorm.apply(hidden_states, self.weight, self.variance_epsilon)  # type: ignore[no-any-return]


def install(model: torch.nn.Module) -> int:
    """Give every RMSNorm of a known family in `model` the forward above; returns how many."""
    swapped = 0
    for module in model.modules():
        if type(module).__name__ in FAMILIES and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_forward, module)  # type: ignore[method-assign]
            swapped += 1
    return swapped
