"""Fixtures for the distributed tests: processes stopped at teardown, a free port, the
environment every rank starts from (helpers: tests/support/trainer/distributed.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.trainer.distributed import KUBETUNE, Procs, spec, write_data, write_json


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.stop_all()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            # One model cache for the session: tiny-llama is built once per node.
            "KUBETUNE_CACHE": str(tmp_path_factory.mktemp("kubetune-cache")),
            "KUBETUNE_TERMINATION_LOG": str(tmp_path_factory.mktemp("term") / "termination-log"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "DS_ACCELERATOR": "cpu",
            # DeepSpeed compiles its CPU ops once (~30 s); every test and run shares the result.
            "TORCH_EXTENSIONS_DIR": str(Path.home() / ".cache/kubetune/torch_extensions"),
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for var in (
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "KUBETUNE_OUTPUT_URI",
    ):
        env.pop(var, None)
    return env


@pytest.fixture(scope="module")  # per test module that asks for it
def reference(tmp_path_factory: pytest.TempPathFactory, base_env: dict[str, str]) -> Path:
    """One process, micro batch 2: the curve every distributed layout must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    out = tmp / "out"
    job = write_json(tmp / "job.json", spec(write_data(tmp / "data.jsonl"), str(out), micro=2))
    proc = subprocess.run(
        [KUBETUNE, "train", "--spec", str(job)],
        env=base_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out
