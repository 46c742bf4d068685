"""Serving tests share the tiny model and adapter fixtures of tests/trainer/evaluation."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluation"))

from kt_tiny_lm import tiny_dirs

__all__ = ["tiny_dirs"]
