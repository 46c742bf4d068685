from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _offline_env(trainer_env: None) -> None:
    """Every test here runs offline in the session's model cache (tests/trainer/conftest.py)."""


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    """These models are tiny: on a shared 2-core box one thread beats two that fight."""
    import torch

    torch.set_num_threads(1)
