"""Fixtures for this folder live in op_support.py (importable by tests under a unique name:
a bare `from op_support import` picks whichever conftest the whole suite loaded first)."""

from op_support import *  # noqa: F403
