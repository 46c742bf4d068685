"""jemalloc, opt-in, for the heavy commands (kubetune_trainer/allocator.py): when it is
wanted, how the environment is built, and that a re-executed `kubetune` really runs with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubetune_api import allocator as shared
from kubetune_trainer import allocator

JEMALLOC = allocator.library()
needs_jemalloc = pytest.mark.skipif(
    JEMALLOC is None and not os.environ.get("CI"),
    reason="libjemalloc2 not installed (make test installs it: scripts/apt-packages.txt)",
)


@needs_jemalloc
def test_the_environment_preloads_jemalloc_before_what_was_there() -> None:
    wanted = {allocator.ENV: "jemalloc"}
    env = allocator.preload_env({**wanted, "PATH": "/bin", "LD_PRELOAD": "libother.so"})
    assert env is not None and env["LD_PRELOAD"] == f"{allocator.LIBRARY}:libother.so"
    assert env["PATH"] == "/bin"
    assert allocator.preload_env({**wanted, "LD_PRELOAD": allocator.LIBRARY}) is None  # there
    # glibc's malloc is the default: jemalloc costs speed at long steps (findings, "jemalloc").
    assert allocator.preload_env({"PATH": "/bin"}) is None
    assert allocator.preload_env({allocator.ENV: "", "PATH": "/bin"}) is None
    assert allocator.preload_env({allocator.ENV: "system"}) is None


def test_jemalloc_asked_for_but_not_installed_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A machine without libjemalloc2 (the lookup is kubetune_api's, shared with the operator).
    monkeypatch.setattr(shared, "library", lambda: None)
    with pytest.raises(SystemExit, match=r"KUBETUNE_ALLOCATOR=jemalloc: .* apt-get install"):
        allocator.preload_env({allocator.ENV: "jemalloc"})
    assert allocator.preload_env({}) is None  # the default needs nothing installed


def test_an_unknown_allocator_is_refused_by_name() -> None:
    with pytest.raises(SystemExit, match=r"KUBETUNE_ALLOCATOR='tcmalloc'.*'system'"):
        allocator.preload_env({allocator.ENV: "tcmalloc"})


def test_the_allocator_in_use_is_read_from_the_memory_maps(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n")
    assert allocator.in_use(str(maps)) == "jemalloc"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert allocator.in_use(str(maps)) == "system"
    assert allocator.in_use(str(tmp_path / "absent")) == "system"


PROBE = """
import sys
from kubetune_trainer import allocator
if allocator.in_use() == "system":
    allocator.reexec(sys.argv)  # returns when the command is light or nothing changes
print(sys.argv[1:], allocator.in_use())
"""


@needs_jemalloc
@pytest.mark.parametrize(
    ("command", "setting", "want"),
    [("train", "jemalloc", "jemalloc"), ("train", "system", "system"), ("train", "", "system"),
     ("validate", "jemalloc", "system")],
)  # fmt: skip
def test_a_heavy_command_re_executes_itself_with_jemalloc(
    tmp_path: Path, command: str, setting: str, want: str
) -> None:
    # The re-executed process is `python -m kubetune_trainer.cli ...`: a stand-in cli
    # package first on the path prints what it runs with instead of training.
    fake = tmp_path / "kubetune_trainer"
    fake.mkdir()
    real = Path(allocator.__file__)
    (fake / "__init__.py").write_text("")
    (fake / "allocator.py").write_text(real.read_text())
    (fake / "cli.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), allocator.ENV: setting}
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run(
        [sys.executable, str(fake / "cli.py"), command, "--spec", "x.yaml"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"[{command!r}, '--spec', 'x.yaml'] {want}"
