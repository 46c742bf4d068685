"""Fixtures for kubetune's evaluation tests; kt_tiny_lm.py is shared with the other folders."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from kt_tiny_lm import tiny_dirs

__all__ = ["tiny_dirs"]
