"""kubetune_api/allocator.py's defaults: "auto" (jemalloc whenever it is installed, with a
process's settings), the operator's opt-in beside the trainer's (tests/trainer/engine/
test_allocator.py); the user's own variables win over the process's settings."""

from __future__ import annotations

import pytest

from kubetune_api import allocator

SETTINGS = {"PYTHONMALLOC": "malloc", "MALLOC_CONF": "dirty_decay_ms:1000"}


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "library", lambda: allocator.LIBRARY)


def test_auto_preloads_jemalloc_with_its_settings_unless_the_user_set_them(installed) -> None:
    env = allocator.preload_env({"PATH": "/bin"}, default="auto", settings=SETTINGS)
    assert env == {"PATH": "/bin", "LD_PRELOAD": allocator.LIBRARY, **SETTINGS,
                   allocator.REEXEC_MARK: "1"}  # fmt: skip
    mine = {"MALLOC_CONF": "narenas:1", "PYTHONMALLOC": "pymalloc"}
    env = allocator.preload_env(mine, default="auto", settings=SETTINGS)
    assert env is not None and {k: env[k] for k in mine} == mine
    # KUBETUNE_ALLOCATOR=system turns the default off; preloaded already: nothing to do.
    off = {allocator.ENV: "system"}
    assert allocator.preload_env(off, default="auto", settings=SETTINGS) is None
    there = {"LD_PRELOAD": allocator.LIBRARY}
    assert allocator.preload_env(there, default="auto", settings=SETTINGS) is None


def test_auto_without_jemalloc_keeps_the_system_malloc_silently(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(allocator, "library", lambda: None)
    assert allocator.preload_env({}, default="auto", settings=SETTINGS) is None
    # Asked for by name, its absence is an error naming the package.
    with pytest.raises(SystemExit, match="apt-get install libjemalloc2"):
        allocator.preload_env({allocator.ENV: "jemalloc"}, default="auto")


def test_auto_is_a_default_not_a_value_a_user_sets(installed) -> None:
    with pytest.raises(SystemExit, match=r"KUBETUNE_ALLOCATOR='auto': use 'system' or"):
        allocator.preload_env({allocator.ENV: "auto"}, default="auto")


def test_the_operator_runs_on_the_system_malloc_unless_asked(installed) -> None:
    from kubetune_operator.__main__ import ALLOCATOR_DEFAULT, MALLOC_SETTINGS

    # jemalloc costs the operator CPU and does not lower its start-up peak (findings).
    assert allocator.preload_env({}, default=ALLOCATOR_DEFAULT, settings=MALLOC_SETTINGS) is None
    env = allocator.preload_env(
        {allocator.ENV: "jemalloc"}, default=ALLOCATOR_DEFAULT, settings=MALLOC_SETTINGS
    )
    assert env is not None and env["PYTHONMALLOC"] == "malloc"
