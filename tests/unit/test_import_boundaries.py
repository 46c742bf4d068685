"""Layers import only downward: the contract has no heavy deps; the operator has no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = {
    ROOT / "operator" / "kubetune_api": {"kopf", "kubernetes", "torch", "transformers", "peft",
                                         "kubetune_operator", "kubetune_trainer"},
    ROOT / "trainer-image" / "kubetune_trainer": {"kopf", "kubernetes", "kubetune_operator"},
    ROOT / "operator" / "kubetune_operator": {"torch", "transformers", "peft", "trl",
                                              "bitsandbytes", "deepspeed", "kubetune_trainer"},
}  # fmt: skip


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", list(RULES), ids=[p.name for p in RULES])
def test_static_imports_respect_layers(package: Path) -> None:
    files = sorted(package.rglob("*.py"))
    assert files, f"{package} is empty"
    bad = {
        str(f.relative_to(ROOT)): sorted(imported_roots(f) & RULES[package])
        for f in files
        if imported_roots(f) & RULES[package]
    }
    assert not bad, bad


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in out.stdout.split()}


def test_contract_import_stays_light() -> None:
    loaded = _modules_after_import("kubetune_api.crd")
    assert not loaded & {"torch", "kopf", "kubernetes", "transformers"}


def test_cli_validate_does_not_import_torch() -> None:
    loaded = _modules_after_import("kubetune_trainer.commands.validate")
    assert "torch" not in loaded
