"""A 4-bit base trained in bf16 keeps its frozen embedding and lm_head in bf16
(modeling/embeddings16): half their bytes, the same logits under autocast, a forward that
still works outside autocast (generate), and training that matches fp32 embeddings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from kubetune_trainer.engine.main import execute
from kubetune_trainer.engine.setup import training_texts
from kubetune_trainer.modeling import embeddings16, loader
from tests.support.builders import make_job, prepared, train_losses

pytestmark = pytest.mark.usefixtures("trainer_env")
IDS = torch.tensor([[1, 5, 9, 13, 17, 21]])


def _model(tmp_path: Path, precision: str) -> torch.nn.Module:
    spec = make_job(tmp_path, quantization={"mode": "4bit", "doubleQuant": True}).spec
    base = loader.resolve_base(spec, training_texts(prepared()))
    return loader.attach_lora(spec, loader.load_base_model(spec, base, precision), True)


def test_bf16_training_stores_the_embeddings_in_bf16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fp32_emb = _model(tmp_path / "a", "fp32")  # fp32 training: untouched
    assert fp32_emb.get_input_embeddings().weight.dtype == torch.float32
    model = _model(tmp_path / "b", "bf16")
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert emb.weight.dtype == torch.bfloat16 and head.weight.dtype == torch.bfloat16
    model.eval()
    with torch.no_grad():
        plain = model(input_ids=IDS).logits  # outside autocast, as generate runs
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = model(input_ids=IDS).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            want = fp32_emb.eval()(input_ids=IDS).logits
    assert plain.dtype == torch.float32 and torch.isfinite(plain).all()
    assert auto.dtype == want.dtype
    assert torch.allclose(auto.float(), want.float(), atol=0.05, rtol=0.05)

    monkeypatch.setattr(embeddings16, "ENABLED", False)
    off = _model(tmp_path / "c", "bf16")
    assert off.get_input_embeddings().weight.dtype == torch.float32


def test_bf16_embeddings_train_like_fp32_embeddings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    losses = {}
    for enabled in (False, True):
        monkeypatch.setattr(embeddings16, "ENABLED", enabled)
        job = make_job(
            tmp_path / str(enabled),
            quantization={"mode": "4bit", "doubleQuant": True},
            # (at the default 2e-2 a grad-norm spike amplifies any rounding into 0.2 by step 7)
            training={"precision": "bf16", "maxSteps": 8, "learningRate": 2e-3},
        )
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="kubetune_trainer.modeling.loader"):
            code, res = execute(job, prepared=prepared(), say=lambda _s: None)
        assert code == 0 and res is not None
        assert ("embeddings stored in bf16" in caplog.text) is enabled
        losses[enabled] = train_losses(Path(res.run_uri))
        losses[enabled][-1] = res.tuned_eval_loss
    assert losses[True].keys() == losses[False].keys() and len(losses[True]) >= 8
    for step, want in losses[False].items():  # measured: within 0.001
        assert losses[True][step] == pytest.approx(want, abs=0.01), step
