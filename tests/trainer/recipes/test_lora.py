"""LoRA and QLoRA on a tiny Llama: the loss falls and only the adapter is saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from kubetune_api.termination import TerminationSummary
from kubetune_trainer.engine.main import execute
from kubetune_trainer.modeling.builtin import TINY_LLAMA
from tests.support.builders import make_job, prepared, train_losses


def _first_last(losses: dict[int, float], k: int = 4) -> tuple[float, float]:
    steps = sorted(losses)
    first = sum(losses[s] for s in steps[:k]) / k
    last = sum(losses[s] for s in steps[-k:]) / k
    return first, last


@pytest.mark.parametrize("quant", ["none", "4bit", "8bit"])
def test_training_lowers_loss(tmp_path: Path, quant: str) -> None:
    job = make_job(tmp_path, quantization={"mode": quant})
    said: list[str] = []
    code, res = execute(job, prepared=prepared(), say=said.append)
    assert code == 0 and res is not None
    # The model summary names the shape, the bitsandbytes layers and where LoRA went.
    (summary,) = [s for s in said if s.startswith("architecture: ")]
    layers = TINY_LLAMA["num_hidden_layers"]
    assert summary.startswith(f"architecture: llama: {layers} layers")
    if quant == "none":
        assert "Linear" not in summary
    else:  # every projection of every layer is a bitsandbytes layer
        assert f"{7 * layers} {'Linear4bit' if quant == '4bit' else 'Linear8bitLt'}" in summary
    assert f"LoRA on {7 * layers} modules" in summary  # all-linear: q k v o gate up down
    first, last = _first_last(train_losses(Path(res.run_uri)))
    assert last < first - 0.1, (first, last)
    assert res.tuned_eval_loss < res.base_eval_loss - 0.1, (res.base_eval_loss, res.tuned_eval_loss)
    assert res.report["hyperparameters"]["quantization"] == quant


def test_adapter_holds_only_lora_weights(tmp_path: Path) -> None:
    job = make_job(
        tmp_path, adapter={"r": 4, "targetModules": ["q_proj", "v_proj"]}, training={"maxSteps": 2}
    )
    code, res = execute(job, prepared=prepared(), say=lambda s: None)
    assert code == 0
    adapter = Path(res.adapter.uri)
    weights = adapter / "adapter_model.safetensors"
    with safe_open(str(weights), "pt") as f:
        names = list(f.keys())
        numel = sum(f.get_tensor(n).numel() for n in names)
    assert names and all("lora_" in n for n in names), names
    # r * (in + out) per adapted projection, in every layer: q is hidden->hidden, v is
    # hidden->kv_heads*head_dim.
    h, layers = TINY_LLAMA["hidden_size"], TINY_LLAMA["num_hidden_layers"]
    kv = h // TINY_LLAMA["num_attention_heads"] * TINY_LLAMA["num_key_value_heads"]
    expected = layers * 4 * ((h + h) + (h + kv))
    assert numel == expected
    # fp32 tensors plus a small JSON header: no base weight hides in the file.
    size = weights.stat().st_size
    assert expected * 4 <= size < expected * 4 + 4096
    assert res.adapter.size == size
    assert not list(adapter.glob("model*.safetensors"))
    meta = json.loads((adapter / "adapter.json").read_text())
    assert meta["sha256"] == res.adapter.sha256
    assert (adapter / "README.md").read_text().startswith("---\nbase_model: builtin:tiny-llama")
    report = Path(res.report_uri)
    for name in ("report.json", "report.md", "loss_curve.png", "metrics.jsonl"):
        assert (report / name).stat().st_size > 0, name
    line = Path(tmp_path / "termination-log").read_text()
    summary = TerminationSummary.model_validate_json(line).model_dump()  # strict: the contract
    assert summary["exit_code"] == 0 and summary["adapter_sha256"] == res.adapter.sha256
