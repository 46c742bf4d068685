"""Fixtures shared by trainer test folders that opt in (engine, preference)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache per session: tiny tokenizers and the converted SmolLM2 are built once."""
    return tmp_path_factory.mktemp("kubetune-cache")


@pytest.fixture
def trainer_env(monkeypatch: pytest.MonkeyPatch, model_cache: Path, tmp_path: Path) -> None:
    """Offline, in the session's model cache, with this test's own termination log."""
    monkeypatch.setenv("KUBETUNE_CACHE", str(model_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    monkeypatch.delenv("KUBETUNE_OUTPUT_URI", raising=False)
