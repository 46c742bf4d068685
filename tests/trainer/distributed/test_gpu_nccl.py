"""Two processes over NCCL on two CUDA GPUs match one GPU with the same global batch.
Skipped (with the reason) on machines with fewer than two GPUs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from tests.support.trainer.distributed import (
    KUBETUNE,
    Procs,
    assert_same_curve,
    launch_nodes,
    losses,
    spec,
    wait_ok,
    write_data,
    write_json,
)

GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(GPUS < 2, reason=f"needs 2 CUDA GPUs for NCCL, this machine has {GPUS}: "
                       "run `pytest -m gpu` on a multi-GPU machine"),
]  # fmt: skip


def test_nccl_two_processes_match_one_gpu(
    tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    env = {k: v for k, v in base_env.items() if k != "DS_ACCELERATOR"}
    ref_out = tmp_path / "ref"
    ref = write_json(tmp_path / "ref.json",
                     spec(write_data(tmp_path / "data.jsonl"), str(ref_out), micro=2))  # fmt: skip
    proc = subprocess.run([KUBETUNE, "train", "--spec", str(ref)], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    manifest = spec(write_data(tmp_path / "data.jsonl"), str(out), processesPerNode=2)
    wait_ok(launch_nodes(procs, tmp_path, manifest, env, port), tmp_path)
    assert_same_curve(losses(out), losses(ref_out))
