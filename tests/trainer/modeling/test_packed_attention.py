"""Attention inside each packed example (modeling/packed_attention.py): the same logits and
gradients as transformers' masked sdpa, nothing crosses an example, padded batches and
generation keep transformers' own path, and the loader's choice is narrow."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig

from kubetune_trainer.modeling import packed_attention as pa

SEGMENTS = [[10, 20, 18], [30, 17, 1]]  # two rows of 48; the last "example" is padding alone
WIDTH = 48


def _config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        attn_implementation="sdpa", use_cache=False,  # as training runs (sft.py)
    )  # fmt: skip


def _models() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    ref = LlamaForCausalLM(_config()).float()
    packed = copy.deepcopy(ref)
    packed.set_attn_implementation(pa.register())
    return ref, packed


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 97, (len(SEGMENTS), WIDTH), generator=g)
    pos = torch.stack([torch.cat([torch.arange(n) for n in row]) for row in SEGMENTS])
    return {"input_ids": ids, "position_ids": pos, "labels": ids.clone()}


def test_packed_rows_give_the_masked_sdpa_logits_and_gradients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref, packed = _models()
    split: list[int] = []
    real = pa.segment_lengths

    def spy(*args: object) -> list[int] | None:
        out = real(*args)  # type: ignore[arg-type]
        split.append(len(out or ()))
        return out

    monkeypatch.setattr(pa, "segment_lengths", spy)
    batch = _batch()
    a, b = ref(**batch), packed(**batch)
    assert split and all(n == 6 for n in split)  # every layer split the rows into examples
    assert torch.allclose(a.logits, b.logits, atol=1e-5), (a.logits - b.logits).abs().max()
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(ref.named_parameters(), packed.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


def test_segment_lengths_cross_no_row_and_refuse_what_is_not_packed() -> None:
    pos = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]])
    assert pa.segment_lengths(pos, 2, 5) == [3, 2, 2, 3]
    # Row 2 continues row 1's positions: still a new example (a row always starts one).
    assert pa.segment_lengths(torch.tensor([[0, 1, 2], [3, 4, 0]]), 2, 3) == [3, 2, 1]
    assert pa.segment_lengths(torch.arange(5)[None], 2, 5) is None  # one sequence a row
    assert pa.segment_lengths(pos, 3, 5) is None  # position ids of another batch
    assert pa.segment_lengths(None, 2, 5) is None


def test_each_example_alone_is_itself_inside_the_row() -> None:
    _, packed = _models()
    batch = _batch()
    with torch.no_grad():
        whole = packed(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        start = 0
        for n in SEGMENTS[0]:
            ids = batch["input_ids"][:1, start : start + n]
            alone = packed(input_ids=ids, position_ids=torch.arange(n)[None]).logits
            assert torch.allclose(alone[0], whole[0, start : start + n], atol=1e-5)
            start += n


def test_padded_batches_and_generation_keep_transformers_own_attention() -> None:
    ref, packed = _models()
    ids = torch.randint(3, 97, (2, 12), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # right padding, as the evaluation collator pads
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask).logits
        b = packed(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(a, b, atol=1e-5)
    prompt = ids[:1, :6]
    kw = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(ref.generate(prompt, **kw), packed.generate(prompt, **kw))
    # The mask function builds nothing for a plain row and transformers' mask otherwise.
    plain = {"batch_size": 1, "q_length": 4, "kv_length": 4, "attention_mask": None}
    assert pa.mask(**plain) is None
    padded = {**plain, "attention_mask": torch.tensor([[True, True, True, False]])}
    assert pa.mask(**padded) is not None


def test_it_is_chosen_only_for_position_id_packing_of_known_causal_lms() -> None:
    row = pa.MIN_ROW
    assert not pa.use(LlamaForCausalLM(_config()), "auto", "none", row)
    assert not pa.use(LlamaForCausalLM(_config()), "eager", "position_ids", row)
    assert not pa.use(LlamaForCausalLM(_config()), "auto", "position_ids", row // 2)  # short
    model = LlamaForCausalLM(_config())
    assert model.config._attn_implementation == "sdpa"
    assert pa.use(model, "auto", "position_ids", row)
    assert model.config._attn_implementation == pa.NAME
    from transformers import MistralForCausalLM

    config = MistralConfig(
        vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, sliding_window=16,
        attn_implementation="sdpa",
    )  # fmt: skip
    windowed = MistralForCausalLM(config)
    assert not pa.use(windowed, "auto", "position_ids", row)  # its window needs the mask


def test_each_example_runs_on_the_flash_kernel_not_the_math_fallback() -> None:
    """SDPA takes only 4-D inputs into its CPU flash kernel and silently falls back to the
    math kernel (the whole score matrix) for anything else: with only flash allowed, the
    per-example call must still run, GQA included."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _, packed = _models()  # 4 heads over 2 kv heads
    batch = _batch()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        out = packed(**batch)
        out.loss.backward()
    assert torch.isfinite(out.loss)
