"""DPO/ranking recipe tests run the real engine on tiny models, offline, in a temp cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _offline_env(trainer_env: None) -> None:
    """Every test here runs offline in the session's model cache (tests/trainer/conftest.py)."""
