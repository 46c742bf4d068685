"""The `gpu` marker with its skip: collected everywhere, run where a CUDA device is.

Run them on a GPU machine with `pytest -m gpu tests/trainer` (docs/models.md)."""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
GPU_COUNT = torch.cuda.device_count() if CUDA else 0


def gpu_marks(min_gpus: int = 1) -> list[pytest.MarkDecorator]:
    reason = (
        f"needs {min_gpus} CUDA GPU(s), this machine has {GPU_COUNT}: run `pytest -m gpu` "
        "on a GPU machine"
    )
    return [pytest.mark.gpu, pytest.mark.skipif(min_gpus > GPU_COUNT, reason=reason)]
