"""RMSNorm in fewer passes (modeling/cpu_norm.py): transformers' outputs bit for bit in bf16
and its gradients to rounding, for every dtype pairing a job meets; installed only on the
families whose RMSNorm is that formula."""

from __future__ import annotations

import copy
import importlib
import inspect

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from kubetune_trainer.modeling import cpu_norm

PAIRS = [  # (input, weight): frozen16's bf16 base, bf16 autocast over fp32 weights, fp32
    (torch.bfloat16, torch.bfloat16),
    (torch.bfloat16, torch.float32),
    (torch.float32, torch.float32),
]


@pytest.mark.parametrize(("x_dtype", "w_dtype"), PAIRS)
def test_the_same_outputs_and_gradients_as_transformers(
    x_dtype: torch.dtype, w_dtype: torch.dtype
) -> None:
    torch.manual_seed(0)
    ref = LlamaRMSNorm(256, eps=1e-5).to(w_dtype)
    ref.weight.data.normal_()
    fast = copy.deepcopy(ref)
    assert cpu_norm.install(fast) == 1
    x = (torch.randn(3, 40, 256) * 3).to(x_dtype)
    grad = torch.randn(3, 40, 256).to(torch.promote_types(x_dtype, w_dtype))
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = ref(a), fast(b)
    assert got.dtype == want.dtype
    if x_dtype == torch.bfloat16:
        assert torch.equal(got, want)  # rounded where transformers rounds
    else:
        assert torch.allclose(got, want, rtol=1e-6, atol=1e-6)
    want.backward(grad)
    got.backward(grad)
    # One rounding of the input's dtype at most (bf16: 2^-8 of the largest gradient).
    tol = 2**-8 if x_dtype == torch.bfloat16 else 1e-6
    assert (a.grad - b.grad).abs().max() <= tol * a.grad.abs().max()
    assert torch.allclose(
        fast.weight.grad, ref.weight.grad, rtol=1e-3, atol=1e-3 * ref.weight.grad.abs().max()
    )


def test_a_frozen_weight_gets_no_gradient_and_the_input_does() -> None:
    norm = LlamaRMSNorm(64).bfloat16().requires_grad_(False)
    cpu_norm.install(norm)
    x = torch.randn(5, 64, dtype=torch.bfloat16, requires_grad=True)
    norm(x).sum().backward()
    assert norm.weight.grad is None and x.grad is not None and torch.isfinite(x.grad).all()


def test_the_families_it_takes_have_llamas_formula() -> None:
    """A new transformers release that changes one of them must fail here, not train wrong."""
    reference = inspect.getsource(LlamaRMSNorm.forward).replace("LlamaRMSNorm", "X")
    for name in cpu_norm.FAMILIES:
        family = name.removesuffix("RMSNorm").lower()
        module = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
        assert inspect.getsource(getattr(module, name).forward).replace(name, "X") == reference


def test_a_whole_model_trains_the_same() -> None:
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, use_cache=False,
    )  # fmt: skip
    torch.manual_seed(0)
    ref = LlamaForCausalLM(config)
    fast = copy.deepcopy(ref)
    assert cpu_norm.install(fast) == 2 * 2 + 1  # two per layer and the final one
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    a, b = ref(input_ids=ids, labels=ids), fast(input_ids=ids, labels=ids)
    assert torch.allclose(a.loss, b.loss, atol=1e-6)
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(ref.named_parameters(), fast.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name
