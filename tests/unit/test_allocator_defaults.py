"""kubetune_api/allocator.py's process settings (the operator's MALLOC_SETTINGS): added only
when jemalloc is asked for, and the user's own variables win over them. The choice itself
(system by default, jemalloc refused by name when missing) is tests/trainer/engine/
test_allocator.py's."""

from __future__ import annotations

import pytest

from kubetune_api import allocator
from kubetune_operator.config import MALLOC_SETTINGS


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "library", lambda: allocator.LIBRARY)


def test_the_operator_runs_on_the_system_malloc_unless_asked(installed) -> None:
    # jemalloc costs the operator CPU and does not lower its start-up peak (findings).
    assert allocator.preload_env({"PATH": "/bin"}, settings=MALLOC_SETTINGS) is None
    env = allocator.preload_env({allocator.ENV: "jemalloc"}, settings=MALLOC_SETTINGS)
    assert env == {allocator.ENV: "jemalloc", "LD_PRELOAD": allocator.LIBRARY,
                   **MALLOC_SETTINGS, allocator.REEXEC_MARK: "1"}  # fmt: skip


def test_the_users_own_malloc_variables_win_over_the_settings(installed) -> None:
    mine = {allocator.ENV: "jemalloc", "MALLOC_CONF": "narenas:1", "PYTHONMALLOC": "pymalloc"}
    env = allocator.preload_env(mine, settings=MALLOC_SETTINGS)
    assert env is not None and {k: env[k] for k in mine} == mine
