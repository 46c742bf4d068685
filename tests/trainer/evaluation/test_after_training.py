"""The hook `kubetune run` calls after training, on the model still in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_trainer.data.prepare import prepare
from kubetune_trainer.evaluation import after_training
from kubetune_trainer.evaluation.generation import validation_loss
from kubetune_trainer.evaluation.models import load_model
from tests.support.trainer.tiny_lm import finance_job


def test_after_training_base_is_adapter_disabled(tiny_dirs: dict[str, Path]) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    job = finance_job(tiny_dirs["data"], str(tiny_dirs["base"]))
    tok = AutoTokenizer.from_pretrained(str(tiny_dirs["base"]))
    tok.padding_side = "right"  # as training leaves it
    model = AutoModelForCausalLM.from_pretrained(str(tiny_dirs["base"]), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(tiny_dirs["adapter"]), is_trainable=True)
    model.train()
    prepared = prepare(job, tok)
    said: list[str] = []
    out = after_training(job, model, tok, prepared, say=said.append)

    # Base numbers equal a separately loaded base; tuned numbers equal base + adapter.
    ds = job.spec.dataset
    ref_base = validation_loss(load_model(str(tiny_dirs["base"])), "sft", prepared.validation, ds)
    ref_tuned = validation_loss(
        load_model(str(tiny_dirs["base"]), str(tiny_dirs["adapter"])),
        "sft",
        prepared.validation,
        ds,
    )
    assert out["base"]["metrics"]["loss"] == pytest.approx(ref_base["loss"], rel=1e-5)
    assert out["tuned"]["metrics"]["loss"] == pytest.approx(ref_tuned["loss"], rel=1e-5)
    assert said and said[0] == out["summary"] and "Example 1:" in out["summary"]
    # Training state is put back.
    assert model.training and tok.padding_side == "right"
