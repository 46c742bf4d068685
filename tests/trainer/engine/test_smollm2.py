"""The real pretrained SmolLM2-135M-Instruct (GGUF from PyPI): conversion is cached
atomically, and a few quickstart-style LoRA steps lower the held-out loss."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_job

from kubetune_trainer.engine.main import execute
from kubetune_trainer.modeling import builtin

DATA = Path(__file__).parents[3] / "examples" / "data" / "finance_qa" / "train.jsonl"


@pytest.mark.slow
def test_quickstart_style_run_lowers_heldout_loss(tmp_path: Path) -> None:
    job = make_job(
        tmp_path, name="smol",
        model={"base": "builtin:smollm2-135m-instruct"},
        adapter={"r": 16, "alpha": 32, "targetModules": ["q_proj", "v_proj", "o_proj"]},
        dataset={"source": str(DATA), "format": "finance_qa", "maxSeqLength": 192,
                 "maxExamples": 96, "validation": {"fraction": 0.15}},
        training={"maxSteps": 8, "microBatchSize": 4, "learningRate": 0.002,
                  "loggingSteps": 2, "scheduler": "constant"},
    )  # fmt: skip
    code, res = execute(job, say=lambda s: None)
    assert code == 0 and res is not None
    assert res.tuned_eval_loss < res.base_eval_loss - 0.1, (res.base_eval_loss,
                                                            res.tuned_eval_loss)  # fmt: skip
    # The converted checkpoint is a complete cache entry, reused (not rebuilt) next time.
    converted = builtin.smollm2_dir()
    assert (converted / ".complete").is_file() and (converted / "model.safetensors").is_file()
    mtime = (converted / "model.safetensors").stat().st_mtime
    assert builtin.smollm2_dir() == converted
    assert (converted / "model.safetensors").stat().st_mtime == mtime
    assert not [p for p in converted.parent.iterdir() if p.name.startswith(".")]  # no temp dirs
