"""Training quality: 4-bit QLoRA learns as well as LoRA on the same data and steps."""

from __future__ import annotations

from pathlib import Path

from helpers import make_job, prepared, train_losses

from kubetune_trainer.engine.main import execute


def _tail_mean(losses: dict[int, float], k: int = 4) -> float:
    steps = sorted(losses)[-k:]
    return sum(losses[s] for s in steps) / k


def test_qlora_ends_within_5_percent_of_lora(tmp_path: Path) -> None:
    finals: dict[str, float] = {}
    for quant in ("none", "4bit"):
        job = make_job(tmp_path / quant, name=f"q-{quant}", quantization={"mode": quant})
        code, res = execute(job, prepared=prepared(), say=lambda s: None)
        assert code == 0 and res is not None
        losses = train_losses(Path(res.run_uri))
        assert len(losses) == 20
        finals[quant] = _tail_mean(losses)
        # The figure a user sees: the run report carries the same final loss.
        assert abs(res.report["results"]["final_train_loss"] - losses[max(losses)]) < 1e-6
    lora, qlora = finals["none"], finals["4bit"]
    assert abs(qlora - lora) <= 0.05 * lora, finals
