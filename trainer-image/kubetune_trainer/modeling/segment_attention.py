"""Causal attention inside each packed example, with a backward made of batched matmuls.

torch's CPU flash-attention kernel is quick forward and slow backward: ~6x its forward at
rows of 512 (bf16 or fp32; bench/findings.md), ~80 GFLOP/s where the same CPU multiplies
bf16 at ~3 TFLOP/s. Its backward, not the masked blocks, was a quarter of a training step
at TinyLlama-1.1B's shape. Here the forward is still that kernel, one causal call per
example, and the backward recomputes each example's probabilities and takes its gradients
with five batched matmuls per example (heads as the batch):

    S = Q K^T * scale (fp32: the softmax's input keeps the forward's precision)
    P = softmax(S + causal)                 dV = P^T dO
    dP = dO V^T                             dS = P * (dP - rowsum(dO * O)) * scale
    dQ = dS K                               dK = dS^T Q

P, dP and dS are bf16 (or the inputs' dtype) and every matmul accumulates in fp32, as
flash-attention's backward on GPUs does. Grouped-query heads share their key/value head:
the gradients of a group are summed.

Memory: only Q, K, V and O are kept for backward (the flash kernel keeps its log-sum-exp
too); an example's score matrices are transient, computed a slice of heads at a time to
stay under SCORE_BYTES. Examples longer than LONGEST go back to the flash kernel's own
backward (recompute that example's forward under autograd), whose memory does not grow
with the square.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

# Bytes of transient score matrices per slice of heads (fp32 S, low-precision P and dP).
SCORE_BYTES = 64 << 20
# Longer examples use the flash kernel's backward (one head's fp32 square is 4 MiB here).
LONGEST = 1024
# Example lengths are rounded up to a multiple of this in backward (see _example_grads).
ALIGN = 64


def spans(lengths: list[int], length: int) -> list[tuple[int, int, int]]:
    """(row, start, n) of each example, from their lengths over the flattened rows. An
    example never crosses a row: positions restart at each row."""
    out, at = [], 0
    for n in lengths:
        row, start = divmod(at, length)
        if start + n > length:
            raise ValueError(f"example of {n} tokens at {start} crosses a row of {length}")
        out.append((row, start, n))
        at += n
    return out


@functools.lru_cache(maxsize=64)
def _causal(n: int) -> torch.Tensor:
    """fp32 [n, n]: 0 on and below the diagonal, -inf above."""
    return torch.full((n, n), float("-inf")).triu_(1)


def _padded(
    t: torch.Tensor, size: int, groups: int = 1, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """[h, n, d] -> [h * groups, size, d], zero rows after n (each head repeated groups
    times: a kv head for each query head of its group), contiguous."""
    h, n, d = t.shape
    out = t.new_zeros(h, groups, size, d, dtype=dtype or t.dtype)
    out[:, :, :n] = t[:, None]
    return out.view(h * groups, size, d)


def _example_grads(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    do: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One example: q, o, do [heads, n, d]; k, v [kv_heads, n, d] -> dq, dk, dv.

    Computed at a length rounded up to ALIGN with zero rows: oneDNN builds and keeps a
    kernel for every matmul shape it meets (its primitive cache), and one per example
    length held ~600 MB more on the 30M model. Zero rows change nothing: a padded key is
    after every real query (masked), a padded query has dO = 0, so it adds nothing to dK
    and dV, and its own dQ is dropped."""
    heads, n, _ = q.shape
    kv = k.shape[0]
    groups = heads // kv
    m = -(-n // ALIGN) * ALIGN
    f32 = torch.float32
    q16, q32, do16 = _padded(q, m), _padded(q, m, dtype=f32), _padded(do, m)
    k16, k32, v16 = _padded(k, m, groups), _padded(k, m, groups, f32), _padded(v, m, groups)
    # -rowsum(dO * O) * scale, subtracted inside dP's matmul below (0 on padded rows).
    delta = q.new_zeros(heads, m, 1)
    delta[:, :n] = (do.float() * o.float()).sum(-1, keepdim=True).mul_(-scale)
    dq, dkx, dvx = torch.empty_like(q16), torch.empty_like(k16), torch.empty_like(v16)
    step = max(1, SCORE_BYTES // (m * m * 8))
    for h in range(0, heads, step):
        sl = slice(h, h + step)
        s = torch.baddbmm(_causal(m), q32[sl], k32[sl].transpose(1, 2), alpha=scale)
        p = torch.softmax(s, -1).to(q.dtype)
        del s
        dvx[sl] = torch.bmm(p.transpose(1, 2), do16[sl])
        # (dP - delta) * scale in one matmul; then dS = P * that, in place.
        ds = p.mul_(torch.baddbmm(delta[sl], do16[sl], v16[sl].transpose(1, 2), alpha=scale))
        dq[sl] = torch.bmm(ds, k16[sl])
        dkx[sl] = torch.bmm(ds.transpose(1, 2), q16[sl])
    dk = dkx.view(kv, groups, m, -1)[:, :, :n].sum(1, dtype=f32).to(k.dtype)
    dv = dvx.view(kv, groups, m, -1)[:, :, :n].sum(1, dtype=f32).to(v.dtype)
    return dq[:, :n], dk, dv


def _flash_grads(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor, scale: float
) -> tuple[torch.Tensor, ...]:
    """A long example: its forward again under autograd, and the flash kernel's backward."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() for t in (q, k, v)]
        out = F.scaled_dot_product_attention(
            *(t[None] for t in leaves), is_causal=True, scale=scale, enable_gqa=True
        )
        return torch.autograd.grad(out, leaves, do[None])


class SegmentAttention(torch.autograd.Function):
    """q [batch, heads, L, d], k/v [batch, kv_heads, L, d] -> out [batch, L, heads, d]."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        parts: list[tuple[int, int, int]],
        scale: float,
    ) -> torch.Tensor:
        batch, heads, length, dim = q.shape
        out = q.new_empty(batch, length, heads, dim)
        gqa = k.shape[1] != heads
        for row, start, n in parts:
            sl = slice(start, start + n)
            # 4-D inputs: the CPU flash kernel takes no 3-D ones (SDPA would fall back to
            # its math kernel without a word).
            o = F.scaled_dot_product_attention(
                q[row : row + 1, :, sl],
                k[row : row + 1, :, sl],
                v[row : row + 1, :, sl],
                is_causal=True,
                scale=scale,
                enable_gqa=gqa,
            )
            out[row, sl] = o[0].transpose(0, 1)
        ctx.save_for_backward(q, k, v, out)
        ctx.parts, ctx.scale = parts, scale
        return out

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        q, k, v, out = ctx.saved_tensors
        batch, heads, length, dim = q.shape
        # Gradients laid out as the projections' views are ([batch, L, heads, d] memory).
        dq = q.new_empty(batch, length, heads, dim).transpose(1, 2)
        dk = k.new_empty(batch, length, k.shape[1], dim).transpose(1, 2)
        dv = v.new_empty(batch, length, v.shape[1], dim).transpose(1, 2)
        for row, start, n in ctx.parts:
            sl = slice(start, start + n)
            qs, ks, vs = q[row, :, sl], k[row, :, sl], v[row, :, sl]
            dos = dout[row, sl].transpose(0, 1)
            if n > LONGEST:
                grads = _flash_grads(qs, ks, vs, dos, ctx.scale)
            else:
                grads = _example_grads(qs, ks, vs, out[row, sl].transpose(0, 1), dos, ctx.scale)
            dq[row, :, sl], dk[row, :, sl], dv[row, :, sl] = grads
        return dq, dk, dv, None, None


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int], scale: float
) -> torch.Tensor:
    """Causal attention within each example of the packed rows; [batch, L, heads, d]."""
    # One dtype for all three, as SDPA would take them: autocast's (rotary embeddings can
    # leave q and k in fp32 beside a bf16 v), else their common one. Cast outside the
    # Function so autograd casts the gradients back.
    if torch.is_autocast_enabled(q.device.type):
        dtype = torch.get_autocast_dtype(q.device.type)
    else:
        dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    q, k, v = (t.to(dtype) for t in (q, k, v))
    return SegmentAttention.apply(q, k, v, spans(lengths, q.shape[2]), scale)  # type: ignore[no-any-return]
