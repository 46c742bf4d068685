"""LoRA dropout with a cheap mask (modeling/lora_dropout): nn.Dropout's distribution and
expectation, a bool mask kept for backward, the seeded generator's masks (so gradient
checkpointing recomputes the same ones), and every LoRA layer of a loaded job uses it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from kubetune_trainer.engine.setup import training_texts
from kubetune_trainer.modeling import loader
from kubetune_trainer.modeling.lora_dropout import CheapDropout, install, keep_mask
from tests.support.builders import make_job, prepared

CPU = torch.device("cpu")


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_each_element_is_dropped_with_p_and_the_kept_ones_scaled_back(p: float) -> None:
    torch.manual_seed(0)
    n = 1 << 20
    keep, drawn = keep_mask(torch.Size([n]), p, CPU)
    assert keep.dtype == torch.bool and abs(drawn - p) <= 1 / (1 << 17)
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs((1 - keep.float().mean().item()) - p) < 6 * sigma
    # Neighbours are independent: pairs of drops occur at p^2.
    both = (~keep[:-1] & ~keep[1:]).float().mean().item()
    assert abs(both - p * p) < 6 * math.sqrt(p * p / n)
    out = CheapDropout(p).train()(torch.ones(n))
    assert abs(out.mean().item() - 1) < 6 * sigma / (1 - p)  # the expectation is the input
    assert out.unique().tolist() == pytest.approx([0.0, 1 / (1 - drawn)])


def test_backward_masks_like_forward_and_keeps_only_a_bool_mask() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = CheapDropout(0.25).train()(x)
    assert [t.dtype for t in saved] == [torch.bool]  # not a float mask, not x
    y.backward(torch.ones_like(y))
    kept = y != 0
    assert torch.equal(x.grad != 0, kept)
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.75), atol=1e-4)


def test_eval_and_p_zero_pass_the_input_and_a_seed_fixes_the_mask() -> None:
    x = torch.randn(16, 16)
    assert CheapDropout(0.3).eval()(x) is x
    assert CheapDropout(0.0).train()(x) is x
    masks = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        masks.append(CheapDropout(0.3).train()(x) != 0)
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


def _lora_grads(checkpointing: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, use_cache=False,
    )  # fmt: skip
    model = get_peft_model(
        LlamaForCausalLM(config),
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.2, target_modules=["q_proj", "v_proj"]),
    )
    assert install(model) == 4  # q and v of two layers
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(5)  # the masks' draws
    model(input_ids=ids, labels=ids).loss.backward()
    return [p.grad for p in model.parameters() if p.requires_grad]


def test_gradient_checkpointing_recomputes_the_same_masks() -> None:
    plain, checkpointed = _lora_grads(False), _lora_grads(True)
    for a, b in zip(plain, checkpointed, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.usefixtures("trainer_env")
def test_a_loaded_jobs_lora_layers_use_the_cheap_dropout(tmp_path: Path) -> None:
    spec = make_job(tmp_path, adapter={"dropout": 0.1}).spec
    base = loader.resolve_base(spec, training_texts(prepared()))
    model = loader.attach_lora(spec, loader.load_base_model(spec, base, "fp32"), False)
    drops = [m for name, m in model.named_modules() if ".lora_dropout." in name]
    assert drops and all(type(m) is CheapDropout for m in drops)
    assert all(m.p == spec.adapter.dropout for m in drops)
