"""The SFT Trainer's loss on kept rows only (recipes/lm_loss.py) equals the model's own
loss: same value, same LoRA gradients, the same normalisation by num_items_in_batch, for
padded and position-id-packed batches, with and without completion-only labels; anything
it does not know falls back to the model's own loss."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import torch

from kubetune_trainer.engine.args import training_kwargs
from kubetune_trainer.engine.setup import load_all
from kubetune_trainer.recipes import lm_loss
from kubetune_trainer.recipes.base import RecipeContext
from kubetune_trainer.recipes.sft import build_trainer
from tests.support.builders import make_job, prepared


def _trainer(tmp_path: Path, packing: str, completion_only: bool) -> Any:
    dataset = {"packing": packing, "maxSeqLength": 64, "completionOnlyLoss": completion_only}
    # fp32 throughout (no bf16-stored base): exact comparisons
    job = make_job(tmp_path, dataset=dataset, training={"precision": "fp32"})
    loaded = load_all(job, prepared(), lambda s: None)
    kwargs = training_kwargs(job, tmp_path / "staging", loaded.precision, False, True)
    ctx = RecipeContext(job, loaded.model, loaded.tokenizer, loaded.prepared, kwargs)
    trainer = build_trainer(ctx).trainer
    trainer.model.train()
    return trainer


def _batch(trainer: Any) -> dict[str, torch.Tensor]:
    rows = [trainer.train_dataset[i] for i in range(min(4, len(trainer.train_dataset)))]
    return trainer.data_collator(rows)


def _loss_and_grads(model: Any, loss_fn: Any) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss), grads


def _assert_same(a: tuple[float, dict], b: tuple[float, dict]) -> None:
    assert a[0] == pytest.approx(b[0], rel=1e-5, abs=1e-6)
    assert a[1].keys() == b[1].keys() and a[1]  # the LoRA weights, nothing else
    assert all("lora_" in n for n in a[1])
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("packing", ["position_ids", "none"])
@pytest.mark.parametrize("completion_only", [True, False])
@pytest.mark.parametrize("chosen", ["fused", "select"])
def test_kept_rows_loss_equals_the_models_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, packing: str, completion_only: bool,
    chosen: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("KUBETUNE_LOSS", chosen)
    trainer = _trainer(tmp_path, packing, completion_only)
    model, batch = trainer.model, _batch(trainer)
    assert ("position_ids" in batch) == (packing == "position_ids")
    kept = int((batch["labels"][:, 1:] != -100).sum())
    if completion_only:  # prompts are masked: fewer rows than tokens reach the head
        assert kept < int((batch["input_ids"] != trainer.processing_class.pad_token_id).sum())
    assert lm_loss.lm_head_of(model) is not None
    # Gradient accumulation: normalised by the tokens of all micro-batches, as the model does.
    items = torch.tensor(kept * 3)
    ours = _loss_and_grads(model, lambda: trainer.compute_loss(model, batch, False, items))
    own = _loss_and_grads(model, lambda: model(**batch, num_items_in_batch=items).loss)
    _assert_same(ours, own)
    # Without num_items_in_batch: the mean over kept rows, as the model's own.
    trainer.model_accepts_loss_kwargs = False
    ours = _loss_and_grads(model, lambda: trainer.compute_loss(model, batch, False, items))
    own = _loss_and_grads(model, lambda: model(**batch).loss)
    _assert_same(ours, own)


def test_chunks_give_the_unchunked_loss_and_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False).requires_grad_(False)
    hidden = torch.randn(2, 9, 16, requires_grad=True)
    labels = torch.randint(0, 50, (2, 9))
    labels[0, :4] = -100
    ref_h = hidden.detach().clone().requires_grad_(True)
    shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]
    logits = head(ref_h).reshape(-1, 50)
    ref = torch.nn.functional.cross_entropy(logits, shifted.reshape(-1), reduction="sum") / 7
    ref.backward()
    monkeypatch.setattr(lm_loss, "chunk_rows", lambda vocab: 3)  # 12 kept rows: 4 chunks
    loss = lm_loss.loss_from_hidden(hidden, labels, head, torch.tensor(7))
    (loss * 2).backward()  # the incoming gradient scales the one computed in forward
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(hidden.grad, 2 * ref_h.grad)


def test_unknown_heads_fall_back_to_the_models_own_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBETUNE_LOSS", raising=False)  # the default (lm_loss.mode)
    trainer = _trainer(tmp_path, "position_ids", True)
    model, batch = trainer.model, _batch(trainer)
    own = float(model(**batch).loss)
    base = model.get_base_model()
    calls: list[int] = []
    real = lm_loss.loss_from_hidden
    monkeypatch.setattr(
        lm_loss, "loss_from_hidden", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    trainer.compute_loss(model, batch)
    assert calls == [1]  # the supported model takes the kept-rows path
    # A model without an output embedding (e.g. a classifier) uses the model's own loss.
    monkeypatch.setattr(base, "get_output_embeddings", lambda: None)
    assert lm_loss.lm_head_of(model) is None
    assert float(trainer.compute_loss(model, batch)) == pytest.approx(own, rel=1e-6)
    monkeypatch.undo()
    monkeypatch.setenv("KUBETUNE_LOSS", "fused")
    # So does a model type not known to be lm_head + ForCausalLMLoss (soft-capping, ...),
    # and a head that trains.
    monkeypatch.setattr(base.config, "model_type", "gemma2")
    assert lm_loss.lm_head_of(model) is None
    monkeypatch.undo()
    monkeypatch.setenv("KUBETUNE_LOSS", "fused")
    base.get_output_embeddings().weight.requires_grad_(True)
    assert lm_loss.lm_head_of(model) is None
    base.get_output_embeddings().weight.requires_grad_(False)
    # A head partitioned by ZeRO-3 is an empty placeholder outside the module's forward.
    monkeypatch.setattr(base.get_output_embeddings().weight, "ds_id", 3, raising=False)
    assert lm_loss.lm_head_of(model) is None
    monkeypatch.undo()
    monkeypatch.setenv("KUBETUNE_LOSS", "fused")
    assert lm_loss.lm_head_of(model) is not None
    # A forward that does not go through lm_head (a patched model) returns logits: their loss.
    monkeypatch.setattr(lm_loss, "hidden_states_out", lambda head: contextlib.nullcontext())
    assert float(trainer.compute_loss(model, batch)) == pytest.approx(own, rel=1e-6)
    monkeypatch.undo()
    monkeypatch.setenv("KUBETUNE_LOSS", "fused")
    calls.clear()
    monkeypatch.setenv("KUBETUNE_LOSS", "model")  # the model's own loss, by name
    monkeypatch.setattr(
        lm_loss, "loss_from_hidden", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    assert float(trainer.compute_loss(model, batch)) == pytest.approx(own, rel=1e-6)
    assert calls == []


def test_a_classifier_trains_on_its_own_loss(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    cfg = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, num_labels=3, pad_token_id=0,
    )  # fmt: skip
    model = LlamaForSequenceClassification(cfg)
    assert lm_loss.lm_head_of(model) is None
    batch = {"input_ids": torch.randint(1, 64, (2, 5)), "labels": torch.tensor([0, 2])}
    assert lm_loss.causal_lm_loss(model, batch) is None


def test_an_unknown_loss_mode_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kubetune_trainer.errors import ConfigError

    monkeypatch.setenv("KUBETUNE_LOSS", "fast")
    with pytest.raises(ConfigError, match="KUBETUNE_LOSS='fast': use one of fused, select"):
        lm_loss.causal_lm_loss(torch.nn.Linear(2, 2), {"labels": torch.zeros(1, 2)})


def test_a_bad_loss_mode_stops_the_run_before_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetune_api.constants import ExitCode
    from kubetune_trainer.engine.main import execute
    from tests.support.builders import make_job, prepared

    monkeypatch.setenv("KUBETUNE_LOSS", "fast")
    said: list[str] = []
    code, res = execute(make_job(tmp_path / "out"), prepared=prepared(), say=said.append)
    assert code == ExitCode.INVALID_SPEC and res is None
    assert not any(s.startswith(("data:", "model:")) for s in said), said
