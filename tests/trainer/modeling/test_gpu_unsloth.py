"""Unsloth on a CUDA GPU: load, 3 steps, the loss falls, the adapter reloads with PEFT.
Skipped without a GPU or without the unsloth package (pip install unsloth)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kubetune_trainer.unsloth_backend import unsloth_importable
from tests.support.builders import train_losses
from tests.support.trainer.families import train
from tests.support.trainer.gpu import gpu_marks

pytestmark = [
    *gpu_marks(),
    pytest.mark.skipif(not unsloth_importable(), reason="the unsloth package is not installed"),
]


def test_unsloth_trains_three_steps_and_peft_reloads_the_adapter(
    family_base: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    base = family_base("llama")
    result = train(base, tmp_path / "out", quantization={"mode": "4bit"},
                   training={"engine": "unsloth", "maxSteps": 3, "precision": "bf16",
                             "learningRate": 0.02})  # fmt: skip
    losses = train_losses(Path(result.run_uri))
    assert sorted(losses) == [1, 2, 3] and losses[3] < losses[1]
    adapter = Path(result.run_uri) / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == "LORA"
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    tuned = PeftModel.from_pretrained(model, str(adapter))
    assert any("lora_A" in n for n, _ in tuned.named_parameters())
