"""Fixtures for this folder live in dist_support.py (importable by tests under a unique name:
a bare `from dist_support import` picks whichever conftest the whole suite loaded first)."""

from dist_support import *  # noqa: F403
