"""A CPU job trained in bf16 stores its frozen weights in bf16 (modeling/frozen16): the
base's Linear layers and embeddings of a plain base, the embeddings and head beside a
4-bit body. Half their bytes, the same logits under autocast, a forward that still works
outside autocast (generate), and training that matches the fp32-stored base."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from kubetune_trainer.engine.main import execute
from kubetune_trainer.engine.setup import training_texts
from kubetune_trainer.modeling import frozen16, loader
from kubetune_trainer.recipes import lm_loss
from tests.support.builders import make_job, prepared, train_losses

pytestmark = pytest.mark.usefixtures("trainer_env")
IDS = torch.tensor([[1, 5, 9, 13, 17, 21]])
QUANTIZED = {"mode": "4bit", "doubleQuant": True}
PLAIN = {"mode": "none"}


def _model(tmp_path: Path, precision: str, quantization: dict[str, Any]) -> torch.nn.Module:
    spec = make_job(tmp_path, quantization=quantization).spec
    base = loader.resolve_base(spec, training_texts(prepared()))
    return loader.attach_lora(spec, loader.load_base_model(spec, base, precision), True)


def _dtypes(model: torch.nn.Module) -> dict[str, set[torch.dtype]]:
    """Parameter dtypes by role: trainable, frozen Linear/Embedding weights, the rest."""
    out: dict[str, set[torch.dtype]] = {"trainable": set(), "frozen": set(), "other": set()}
    for name, p in model.named_parameters():
        if p.requires_grad:
            out["trainable"].add(p.dtype)
        elif name.endswith(("proj.base_layer.weight", "embed_tokens.weight", "proj.weight")):
            out["frozen"].add(p.dtype)
        elif p.dtype != torch.uint8:  # 4-bit packed weights
            out["other"].add(p.dtype)
    return out


@pytest.mark.parametrize("quantization", [PLAIN, QUANTIZED], ids=["plain", "4bit"])
def test_bf16_training_stores_the_frozen_weights_in_bf16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quantization: dict[str, Any]
) -> None:
    fp32 = _model(tmp_path / "a", "fp32", quantization)  # fp32 training: untouched
    assert fp32.get_input_embeddings().weight.dtype == torch.float32
    model = _model(tmp_path / "b", "bf16", quantization)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert emb.weight.dtype == torch.bfloat16 and head.weight.dtype == torch.bfloat16
    kinds = _dtypes(model)
    assert kinds["trainable"] == {torch.float32}  # LoRA stays fp32
    assert torch.float32 in kinds["other"]  # norms stay fp32
    if quantization is PLAIN:  # every frozen projection beside its LoRA layers, too
        assert kinds["frozen"] == {torch.bfloat16}
    assert lm_loss.lm_head_of(model) is head  # the opt-in losses still find the head
    model.eval()
    fp32.eval()
    with torch.no_grad():
        plain = model(input_ids=IDS).logits  # outside autocast, as generate runs
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = model(input_ids=IDS).logits
            want = fp32(input_ids=IDS).logits
            # The one rounding autocast did not do before: the embedding rows. With it,
            # autocast's matmuls see the very same bf16 weights as before: equal logits.
            w = fp32.get_input_embeddings().weight
            w.data = w.data.bfloat16().float()
            rounded_rows = fp32(input_ids=IDS).logits
    assert plain.dtype == torch.float32 and torch.isfinite(plain).all()
    assert auto.dtype == want.dtype
    if quantization is PLAIN:
        assert torch.equal(auto, rounded_rows)
    assert torch.allclose(auto.float(), want.float(), atol=0.05, rtol=0.05)
    assert torch.allclose(plain, want.float(), atol=0.05, rtol=0.05)

    monkeypatch.setattr(frozen16, "ENABLED", False)
    off = _model(tmp_path / "c", "bf16", quantization)
    assert off.get_input_embeddings().weight.dtype == torch.float32


@pytest.mark.parametrize("quantization", [PLAIN, QUANTIZED], ids=["plain", "4bit"])
def test_bf16_frozen_weights_train_like_fp32_frozen_weights(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    quantization: dict[str, Any],
) -> None:
    losses = {}
    for enabled in (False, True):
        monkeypatch.setattr(frozen16, "ENABLED", enabled)
        job = make_job(
            tmp_path / str(enabled),
            quantization=quantization,
            # (at the default 2e-2 a grad-norm spike amplifies any rounding into 0.2 by step 7)
            training={"precision": "bf16", "maxSteps": 8, "learningRate": 2e-3},
        )
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="kubetune_trainer.modeling.loader"):
            code, res = execute(job, prepared=prepared(), say=lambda _s: None)
        assert code == 0 and res is not None
        assert ("frozen weights stored in bf16" in caplog.text) is enabled
        losses[enabled] = train_losses(Path(res.run_uri))
        losses[enabled][-1] = res.tuned_eval_loss
    assert losses[True].keys() == losses[False].keys() and len(losses[True]) >= 8
    for step, want in losses[False].items():  # measured: within 0.001
        assert losses[True][step] == pytest.approx(want, abs=0.01), step


def test_a_bf16_checkpoint_loads_in_bf16_and_computes_as_its_fp32_load(tmp_path: Path) -> None:
    """No fp32 copy of a bf16 checkpoint at load (a 7B's 27 GB on a 16 GB pod): the base
    loads in bf16, and the norms go back to fp32 exactly (they were bf16 values)."""
    from transformers import AutoModelForCausalLM

    spec = make_job(tmp_path / "a").spec
    tiny = loader.resolve_base(spec, training_texts(prepared()))
    stored = tmp_path / "bf16-base"
    shutil.copytree(tiny.location, stored)  # its tokenizer; the weights rewritten in bf16
    AutoModelForCausalLM.from_pretrained(tiny.location, dtype=torch.bfloat16).save_pretrained(
        stored
    )
    models = {}
    for precision in ("bf16", "fp32"):
        spec = make_job(tmp_path / precision, model={"base": str(stored)}).spec
        base = loader.resolve_base(spec, training_texts(prepared()))
        raw = loader.load_base_model(spec, base, precision)
        norm = raw.model.norm.weight.dtype
        assert norm == (torch.bfloat16 if precision == "bf16" else torch.float32)
        models[precision] = loader.attach_lora(spec, raw, False).eval()
    kinds = _dtypes(models["bf16"])
    assert kinds["frozen"] == {torch.bfloat16} and kinds["trainable"] == {torch.float32}
    assert kinds["other"] == {torch.float32}  # the norms, back in fp32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = (models[p](input_ids=IDS).logits for p in ("bf16", "fp32"))
    assert torch.equal(got, want)  # LoRA's B starts at zero: the base's logits, exactly


@pytest.mark.parametrize("bias", [False, True])
def test_one_row_outside_autocast_is_a_matrix_vector_product_of_the_same_result(
    bias: bool,
) -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 96, bias=bias).requires_grad_(False)
    weight = layer.weight.detach().bfloat16().float()  # what the cast keeps
    b = None if layer.bias is None else layer.bias.detach().bfloat16().float()
    frozen16.apply(layer)
    assert type(layer) is frozen16.Linear16 and layer.weight.dtype == torch.bfloat16
    x = torch.randn(2, 1, 64)
    exact = torch.nn.functional.linear(x.bfloat16().float(), weight, b)
    rows = layer(x)  # two rows: bf16 F.linear
    one = layer(x[:1])  # decoding one sequence: torch.mv
    flat = layer(x[1, 0])  # a 1-D input keeps its shape too
    assert one.shape == (1, 1, 96) and flat.shape == (96,)
    assert one.dtype == flat.dtype == torch.float32
    for got, want in ((rows, exact), (one, exact[:1]), (flat, exact[1, 0])):
        assert torch.allclose(got, want, atol=2e-2, rtol=1e-2)
