"""On a CUDA GPU: the ETA at start from the device's measured matmul speed, and the memory
watch reading this rank's device (total minus free) and reacting above the threshold.
Skipped (with the reason) without a GPU; the CPU path is tests/trainer/engine/test_eta.py
and test_memwatch.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kubetune_trainer.engine.memwatch import LIMIT_ENV, read_memory
from tests.support.trainer.families import train
from tests.support.trainer.gpu import gpu_marks

pytestmark = gpu_marks()


def test_memory_watch_reads_the_gpu_and_reacts_with_eta_from_the_gpu(
    family_base: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    reading = read_memory("cuda")
    assert reading.source == f"cuda:{torch.cuda.current_device()}" and reading.limit > 0
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    monkeypatch.setenv(LIMIT_ENV, str(max(reading.used, 1)))  # at or above 100% from the start
    result = train(family_base("llama"), tmp_path / "out", quantization={"mode": "4bit"},
                   training={"precision": "bf16"})  # fmt: skip
    mem = result.report["memory"]
    assert mem["marks"][0]["source"].startswith("cuda:")
    assert mem["reactions"][0]["action"] == "gradient checkpointing turned on"
    assert "quantization_4bit" in mem["savings_bytes"]
    eta = result.report["eta"]
    assert eta["start"]["source"].startswith("estimated (") and eta["start"]["seconds"] > 0
