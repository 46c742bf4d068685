"""The SFT recipe's batching decisions: packing by architecture, a resumable sampling order."""

from __future__ import annotations

from pathlib import Path

import torch

from kubetune_trainer.data.collate import PackedCollator, PaddingCollator
from kubetune_trainer.engine.args import training_kwargs
from kubetune_trainer.engine.setup import load_all
from kubetune_trainer.recipes.base import RecipeContext
from kubetune_trainer.recipes.sft import SeededLengthGroupedSampler, build_trainer
from tests.support.builders import make_job, prepared


def _built(tmp_path: Path, packing: str, max_len: int = 128) -> object:
    job = make_job(tmp_path, dataset={"packing": packing, "maxSeqLength": max_len})
    loaded = load_all(job, prepared(), lambda s: None)
    kwargs = training_kwargs(job, tmp_path / "staging", "fp32", False, True)
    ctx = RecipeContext(job, loaded.model, loaded.tokenizer, loaded.prepared, kwargs)
    return build_trainer(ctx)


def test_auto_packing_packs_a_llama_and_none_pads(tmp_path: Path) -> None:
    packed = _built(tmp_path, "auto")  # tiny Llama: position ids keep examples apart
    assert isinstance(packed.trainer.data_collator, PackedCollator)
    assert len(packed.trainer.train_dataset) < packed.train_examples == 48
    padded = _built(tmp_path, "none")
    assert isinstance(padded.trainer.data_collator, PaddingCollator)
    assert len(padded.trainer.train_dataset) == 48
    sampler = padded.trainer._get_train_sampler()
    assert isinstance(sampler, SeededLengthGroupedSampler) and sampler.seed == 7


def test_long_packed_rows_attend_inside_each_example_on_the_cpu(tmp_path: Path) -> None:
    from kubetune_trainer.modeling import packed_attention

    short = _built(tmp_path, "auto")
    assert short.trainer.model.config._attn_implementation == "sdpa"
    long = _built(tmp_path, "auto", packed_attention.MIN_ROW)
    assert long.trainer.model.config._attn_implementation == packed_attention.NAME
    padded = _built(tmp_path, "none", packed_attention.MIN_ROW)
    assert padded.trainer.model.config._attn_implementation == "sdpa"


def test_the_length_grouped_order_comes_from_seed_and_epoch_not_the_global_rng() -> None:
    lengths = [5, 9, 3, 30, 12, 7, 8, 21, 4, 16, 11, 2] * 4

    def order(epoch: int, seed: int = 7) -> list[int]:
        sampler = SeededLengthGroupedSampler(4, lengths, seed)
        sampler.set_epoch(epoch)
        torch.rand(7)  # whatever the process drew before (a base evaluation, a resume)
        return list(sampler)

    assert order(1) == order(1)  # a resumed run sees the batches the first attempt saw
    assert order(1) != order(0) and order(1) != order(1, seed=8)
    assert sorted(order(1)) == list(range(len(lengths)))
