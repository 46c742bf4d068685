"""The suite's own layout (tests/README.md): shared code lives in tests/support and is imported
as a package; no test edits sys.path or imports another test module; one make_job, one
free_port."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SUPPORT = TESTS / "support"
# Scripts the distributed tests start as processes (by path, never imported).
PROGRAMS = re.compile(r"^\w+_program\.py$")


def python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def rel(path: Path) -> str:
    return str(path.relative_to(TESTS.parent))


def test_no_sys_path_edits() -> None:
    edits = [
        rel(p)
        for p in python_files()
        if re.search(r"sys\.path\.(insert|append)\(", p.read_text(encoding="utf-8"))
    ]
    assert edits == [], "use tests.support (pyproject's pythonpath), not sys.path"


def test_no_test_module_imports_another() -> None:
    pattern = re.compile(r"^\s*(from|import) (tests\.\w+\.)*test_\w+", re.M)
    found = [rel(p) for p in python_files() if pattern.search(p.read_text(encoding="utf-8"))]
    assert found == [], "move what tests share into tests/support"


def test_helpers_live_in_tests_support() -> None:
    """Outside tests/support a .py file is a test module, a conftest or a started program."""
    stray = [
        rel(p)
        for p in python_files()
        if SUPPORT not in p.parents
        and p.name != "conftest.py"
        and not p.name.startswith("test_")
        and not PROGRAMS.match(p.name)
    ]
    assert stray == [], "helper modules belong in tests/support (tests/README.md)"


def test_one_make_job_and_one_free_port() -> None:
    """The benchmarks reuse tests.support too (bench/common.py re-exports free_port)."""
    files = python_files() + sorted((TESTS.parent / "bench").glob("*.py"))
    for name, home in (("make_job", "support/builders.py"), ("free_port", "support/net.py")):
        defs = [
            rel(p)
            for p in files
            if re.search(rf"^\s*def {name}\(", p.read_text(encoding="utf-8"), re.M)
        ]
        assert defs == [f"tests/{home}"], (name, defs)
