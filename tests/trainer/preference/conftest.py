"""DPO/ranking recipe tests run the real engine on tiny models, offline, in a temp cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubetune-cache")


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch: pytest.MonkeyPatch, model_cache: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBETUNE_CACHE", str(model_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    monkeypatch.delenv("KUBETUNE_OUTPUT_URI", raising=False)
