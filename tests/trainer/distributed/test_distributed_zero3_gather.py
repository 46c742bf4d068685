"""ZeRO-3 adapter saving where the LoRA tensors really are sliced across 2 ranks.

The engine tests' tiny LoRA tensors fall under ZeRO-3's persistence threshold and stay
whole, so they would pass even without gathering; zero3_program.py sets the threshold to 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kubetune_api.constants import ExitCode
from tests.support.trainer.distributed import HERE, Procs

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


@pytest.mark.slow
def test_gathered_adapter_equals_the_unsliced_weights(
    tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    cmd = [
        TORCHRUN,
        "--nproc-per-node",
        "2",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--max-restarts",
        "0",
        str(HERE / "zero3_program.py"),
    ]
    proc = procs.start(cmd, base_env, tmp_path / "zero3.log")
    code = proc.wait(300)
    log = (tmp_path / "zero3.log").read_text()
    assert code == ExitCode.OK, log[-3000:]
    # Without the gather, rank 0's save would have written only empty tensors.
    assert "rank 0: 8 of 8 adapter tensors partitioned" in log
    assert "naive save has 8 empty tensors; gathered matches: True" in log
