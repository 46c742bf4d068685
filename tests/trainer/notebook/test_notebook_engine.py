"""The notebook's ENGINE parameter (kubetune_trainer.notebook.engine)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kubetune_trainer.notebook.engine import engine_for

GPU, CPU = SimpleNamespace(device="cuda"), SimpleNamespace(device="cpu")


def test_auto_picks_unsloth_only_on_a_gpu_with_the_package() -> None:
    assert engine_for("auto", GPU, importable=True) == "unsloth"
    assert engine_for("auto", GPU, importable=False) == "huggingface"
    assert engine_for("auto", CPU, importable=True) == "huggingface"
    assert engine_for("auto", CPU) == "huggingface"  # this machine: no GPU, no unsloth


def test_explicit_choices_pass_and_typos_name_the_parameter() -> None:
    assert engine_for("unsloth", CPU) == "unsloth"  # the trainer's preflight explains why not
    assert engine_for("huggingface", GPU) == "huggingface"
    with pytest.raises(ValueError, match="ENGINE must be auto, huggingface or unsloth"):
        engine_for("unslot", GPU)
