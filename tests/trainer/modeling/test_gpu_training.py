"""On a CUDA GPU: 4-bit QLoRA, bf16, each rank's own device in the preflight, and a CUDA
out-of-memory classified as exit code 66. Skipped (with the reason) without a GPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kubetune_api.constants import ExitCode
from tests.support.builders import train_losses
from tests.support.trainer.families import train
from tests.support.trainer.gpu import gpu_marks

pytestmark = gpu_marks()


def test_qlora_4bit_on_cuda_trains(
    family_base: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    result = train(family_base("qwen2"), tmp_path / "out", quantization={"mode": "4bit"},
                   training={"precision": "bf16"})  # fmt: skip
    losses = train_losses(Path(result.run_uri))
    assert losses[8] < losses[1]
    card = (Path(result.run_uri) / "adapter" / "README.md").read_text()
    assert "- quantization: 4bit" in card and "bf16" in card
    assert torch.cuda.max_memory_allocated() > 0  # it ran on the GPU


def test_bf16_lora_matches_fp32_closely(
    family_base: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    runs = {}
    for precision in ("bf16", "fp32"):
        r = train(family_base("llama"), tmp_path / precision, name=precision,
                  training={"precision": precision})  # fmt: skip
        runs[precision] = train_losses(Path(r.run_uri))
    assert runs["bf16"][8] < runs["bf16"][1]
    assert abs(runs["bf16"][1] - runs["fp32"][1]) < 0.05  # same data, bf16 rounding only


def test_the_preflight_reads_this_ranks_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from kubetune_trainer.modeling.hardware import system_report

    last = torch.cuda.device_count() - 1
    monkeypatch.setenv("LOCAL_RANK", str(last))
    report = system_report()
    assert report.memory_source == f"cuda:{last}" and torch.cuda.current_device() == last
    free, total = torch.cuda.mem_get_info(last)
    assert report.memory_total_bytes == total
    assert abs(report.memory_available_bytes - free) < 256 * 1024**2


def test_cuda_out_of_memory_is_exit_code_66() -> None:
    import torch

    from kubetune_trainer.engine.main import _classify

    total = torch.cuda.get_device_properties(0).total_memory
    with pytest.raises(torch.OutOfMemoryError) as err:
        torch.empty(total * 2, dtype=torch.uint8, device="cuda")
    code, message = _classify(err.value)
    assert code == ExitCode.OOM == 66
    assert "microBatchSize" in message and "quantization.mode: 4bit" in message
