"""Fixtures for this folder live in data_support.py (importable by tests under a unique name:
a bare `from data_support import` picks whichever conftest the whole suite loaded first)."""

from data_support import *  # noqa: F403
