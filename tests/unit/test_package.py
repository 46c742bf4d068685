"""The distribution: LICENSE, metadata, `kubetune --version`, and `import kubetune` as the
documented Python entry point (light: no torch, kopf or kubernetes at import time)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import yaml
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SRC_PATH = f"{ROOT / 'operator'}:{ROOT / 'trainer-image'}"


def run_py(code: str) -> str:
    env = {"PYTHONPATH": SRC_PATH, "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_license_is_the_apache_2_text_the_chart_and_metadata_name() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    chart = yaml.safe_load((ROOT / "charts" / "kubetune" / "Chart.yaml").read_text())
    assert chart["annotations"]["artifacthub.io/license"] == PYPROJECT["project"]["license"]
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]


def test_metadata_is_complete() -> None:
    project = PYPROJECT["project"]
    for key in ("name", "version", "description", "readme", "license", "authors", "urls",
                "classifiers", "requires-python", "keywords"):  # fmt: skip
        assert project.get(key), f"pyproject [project] lacks {key}"


def test_cli_version_is_the_package_version() -> None:
    out = run_py("from kubetune_trainer.cli import main; main(['--version'])")
    assert out.strip() == f"kubetune {version('kubetune')}"
    assert version("kubetune") == PYPROJECT["project"]["version"]


def test_import_kubetune_reexports_the_api_without_heavy_imports() -> None:
    out = run_py(
        "import json, sys, kubetune, kubetune_api\n"
        "job = kubetune.load_job('examples/quickstart.yaml'.join(['" + str(ROOT) + "/', '']))\n"
        "print(json.dumps({'missing': sorted(set(kubetune_api.__all__) - set(dir(kubetune))),\n"
        "  'kind': job.kind, 'version': kubetune.__version__,\n"
        "  'heavy': sorted(m for m in ('torch', 'kopf', 'kubernetes', 'transformers')\n"
        "                  if m in sys.modules)}))"
    )
    got = json.loads(out)
    assert got == {"missing": [], "kind": "FineTuneJob", "version": version("kubetune"),
                   "heavy": []}  # fmt: skip


def test_import_kubetune_reaches_the_notebook_helpers_lazily() -> None:
    out = run_py("import kubetune; print(kubetune.notebook.__name__)")
    assert out.strip() == "kubetune_trainer.notebook"


def test_package_discovery_ships_the_kubetune_package() -> None:
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    found = {
        p for where in find["where"] for p in find_packages(ROOT / where, include=find["include"])
    }
    assert {"kubetune", "kubetune_api", "kubetune_operator", "kubetune_trainer"} <= found


def test_the_jobs_client_is_reachable_from_kubetune() -> None:
    out = run_py(
        "import sys, kubetune\n"
        "from kubetune import Client, JobRef\n"
        "from kubetune_trainer.jobs import Client as C, JobRef as R\n"
        "print(Client is C and JobRef is R, 'torch' in sys.modules)"
    )
    assert out.split() == ["True", "False"]
