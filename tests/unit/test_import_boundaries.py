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


OPERATOR = ROOT / "operator" / "kubetune_operator"
# The operator's pure layer: spec/observation in, manifests/decisions out. No API client,
# no kopf, no HTTP: testable without a cluster (tests/operator/test_builders.py, test_decide.py).
PURE = ("builders", "decide", "observe", "status", "progress", "netpol")
PURE_FORBIDDEN_ROOTS = {"kopf", "aiohttp", "kubernetes"}
PURE_FORBIDDEN_MODULES = {"kubetune_operator.k8s", "kubetune_operator.handlers",
                          "kubetune_operator.main"}  # fmt: skip


def module_name(path: Path, top: Path = OPERATOR.parent) -> str:
    """The dotted name of a file under `top` (the folder holding the top-level package)."""
    rel = path.relative_to(top).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, top: Path = OPERATOR.parent) -> set[str]:
    """Every module a file imports, relative imports resolved (`from . import k8s` and
    `from .k8s import X` both give kubetune_operator.k8s)."""
    name = module_name(path, top)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # may name a submodule
    return out


def package_file(module: str, package: Path = OPERATOR) -> Path | None:
    """The file of one of `package`'s modules (kubetune_operator.x.y), None for anything else."""
    parts = module.split(".")
    if parts[0] != package.name:
        return None
    rel = package.joinpath(*parts[1:])
    for candidate in (rel / "__init__.py", rel.parent / f"{rel.name}.py"):
        if candidate.is_file():
            return candidate
    return None


def reachable(start: list[str], package: Path = OPERATOR) -> dict[str, set[str]]:
    """{module: what it imports} for `start` and every module of `package` they reach."""
    seen: dict[str, set[str]] = {}
    todo = list(start)
    while todo:
        mod = todo.pop()
        path = package_file(mod, package)
        if mod in seen or path is None:
            continue
        seen[mod] = imported_modules(path, package.parent)
        todo += [m for m in seen[mod] if m.split(".")[0] == package.name]
    return seen


@pytest.mark.parametrize("name", PURE)
def test_pure_operator_modules_import_no_api_client(name: str) -> None:
    """Neither the module nor anything of ours it imports (transitively) pulls in kopf,
    aiohttp or the API module."""
    seen = reachable([f"kubetune_operator.{name}"])
    assert f"kubetune_operator.{name}" in seen
    bad = {
        mod: sorted(
            m for m in imports
            if m.split(".")[0] in PURE_FORBIDDEN_ROOTS
            or any(m == f or m.startswith(f + ".") for f in PURE_FORBIDDEN_MODULES)
        )
        for mod, imports in seen.items()
    }  # fmt: skip
    assert not {k: v for k, v in bad.items() if v}, bad


def test_pure_operator_modules_load_without_kopf_or_aiohttp() -> None:
    mods = ", ".join(f"kubetune_operator.{n}" for n in PURE)
    code = f"import sys, {mods}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert not {m.split(".")[0] for m in loaded} & PURE_FORBIDDEN_ROOTS
    assert not loaded & PURE_FORBIDDEN_MODULES


def test_only_the_api_module_imports_aiohttp() -> None:
    users = {
        str(f.relative_to(OPERATOR))
        for f in OPERATOR.rglob("*.py")
        if "aiohttp" in {m.split(".")[0] for m in imported_modules(f)}
    }
    assert users == {"k8s.py"}


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


TRAINER = ROOT / "trainer-image" / "kubetune_trainer"
# The trainer's lower layers (data, the model, storage, processes) know nothing of what runs
# them: the engine, the recipes, reporting and the CLI's commands import them, never the
# reverse. Checked through every module of ours they import, function-level imports too.
TRAINER_LOWER = ("data", "modeling", "storage", "distributed")
TRAINER_UPPER = tuple(f"kubetune_trainer.{p}" for p in ("engine", "recipes", "reporting",
                                                        "commands"))  # fmt: skip


@pytest.mark.parametrize("layer", TRAINER_LOWER)
def test_trainer_lower_layers_import_no_upper_layer(layer: str) -> None:
    files = sorted((TRAINER / layer).rglob("*.py"))
    assert files, f"{layer} is empty"
    seen = reachable([module_name(f, TRAINER.parent) for f in files], TRAINER)
    upward = {
        mod: sorted(
            m for m in imports if any(m == u or m.startswith(u + ".") for u in TRAINER_UPPER)
        )
        for mod, imports in seen.items()
    }
    bad = {mod: ups for mod, ups in upward.items() if ups}
    assert not bad, f"{layer} reaches up (module: what it imports): {bad}"
