"""Causal attention per packed example with its own backward (modeling/segment_attention.py):
the masked attention's outputs and gradients, in fp32 to rounding and in bf16 as close to
float64 as torch's own flash kernel gets; long examples, head slices, grouped-query heads and
mixed dtypes under autocast; nothing crosses an example or a row."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kubetune_trainer.modeling import segment_attention as sa

HEADS, KV, DIM = 8, 2, 16
ROWS = [[5, 70, 53], [1, 127]]  # two rows of 128: a one-token example, one past ALIGN
WIDTH = 128


def _inputs(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(len(ROWS), HEADS, WIDTH, DIM, generator=g)
    k = torch.randn(len(ROWS), KV, WIDTH, DIM, generator=g)
    v = torch.randn(len(ROWS), KV, WIDTH, DIM, generator=g)
    grad = torch.randn(len(ROWS), WIDTH, HEADS, DIM, generator=g)
    return tuple(t.to(dtype) for t in (q, k, v, grad))


def _masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The reference: one SDPA over each whole row with the block-diagonal causal mask."""
    seg = torch.tensor([[i for i, n in enumerate(row) for _ in range(n)] for row in ROWS])
    mask = (seg[:, :, None] == seg[:, None, :]) & torch.ones(WIDTH, WIDTH).tril().bool()
    groups = HEADS // KV
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None]).transpose(1, 2)


def _grads(
    fn: object, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad: torch.Tensor
) -> list[torch.Tensor]:
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = fn(*leaves)  # type: ignore[operator]
    out.backward(grad)
    return [out.detach(), *(t.grad for t in leaves)]


def _ours(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    lengths = [n for row in ROWS for n in row]
    return sa.attention(q, k, v, lengths, DIM**-0.5)


def _error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want).norm() / want.norm())


@pytest.mark.parametrize("longest", [sa.LONGEST, 64])  # 64: two examples take flash's backward
@pytest.mark.parametrize("score_bytes", [sa.SCORE_BYTES, 1])  # 1: one head at a time
def test_fp32_matches_the_masked_attention(
    monkeypatch: pytest.MonkeyPatch, longest: int, score_bytes: int
) -> None:
    monkeypatch.setattr(sa, "LONGEST", longest)
    monkeypatch.setattr(sa, "SCORE_BYTES", score_bytes)
    inputs = _inputs(torch.float32)
    want, got = _grads(_masked, *inputs), _grads(_ours, *inputs)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.allclose(a, b, atol=2e-5), (name, (a - b).abs().max())


def test_bf16_is_as_close_to_float64_as_the_flash_kernel() -> None:
    exact = _grads(_masked, *_inputs(torch.float64))
    flash = _grads(_masked, *_inputs(torch.bfloat16))
    ours = _grads(_ours, *_inputs(torch.bfloat16))
    for name, a, b, want in zip(("out", "dq", "dk", "dv"), ours, flash, exact, strict=True):
        assert a.dtype == torch.bfloat16, name
        # Measured: within 1.0-1.5x of the flash kernel's own error (the fp32 scores keep
        # the softmax's precision; P and dS are bf16 as in flash-attention's backward).
        assert _error(a, want) <= 2 * max(_error(b, want), 1e-3), (
            name,
            _error(a, want),
            _error(b, want),
        )


def test_nothing_crosses_an_example() -> None:
    q, k, v, grad = _inputs(torch.float32)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    # Change the second row's first example entirely: the other example must not notice.
    for t in (q2, k2, v2):
        t[1, :, :1] = torch.randn_like(t[1, :, :1])
    a, b = _grads(_ours, q, k, v, grad), _grads(_ours, q2, k2, v2, grad)
    for x, y in zip(a, b, strict=True):
        if x.shape[1] == WIDTH:  # out [batch, L, heads, d]
            assert torch.equal(x[1, 1:], y[1, 1:]) and torch.equal(x[0], y[0])
        else:
            assert torch.equal(x[1, :, 1:], y[1, :, 1:]) and torch.equal(x[0], y[0])


def test_autocast_takes_one_dtype_and_hands_gradients_back_in_each_inputs_own() -> None:
    """Rotary embeddings can leave q and k in fp32 beside a bf16 v under autocast."""
    q, k, v, grad = _inputs(torch.float32)
    leaves = [q.clone().requires_grad_(), k.clone().requires_grad_(), v.bfloat16().requires_grad_()]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _ours(*leaves)
    assert out.dtype == torch.bfloat16
    out.backward(grad.bfloat16())
    assert [t.grad.dtype for t in leaves] == [torch.float32, torch.float32, torch.bfloat16]
    want = _grads(_masked, q.double(), k.double(), v.bfloat16().double(), grad.bfloat16().double())
    assert _error(leaves[0].grad, want[1]) < 2e-2


def test_an_example_may_not_cross_a_row() -> None:
    assert sa.spans([3, 5, 8], 8) == [(0, 0, 3), (0, 3, 5), (1, 0, 8)]
    with pytest.raises(ValueError, match="crosses a row"):
        sa.spans([3, 6, 7], 8)
