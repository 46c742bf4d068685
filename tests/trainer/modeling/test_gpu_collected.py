"""The GPU tests are ready for a GPU machine: `make test-gpu` runs every `gpu`-marked test;
here (no CUDA) each is collected and skipped with its reason, and docs/models.md's GPU
table lists exactly those tests. The `unsloth` extra is declared (never installed here)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.trainer.gpu import CUDA

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow  # collects all of tests/trainer (~1 min on a loaded 2-core box)
@pytest.mark.skipif(CUDA, reason="on a GPU machine the gpu tests run instead of skipping")
def test_gpu_tests_are_collected_and_skipped_with_their_reason() -> None:
    make = (ROOT / "Makefile").read_text()
    command = re.search(r"^test-gpu:.*\n\t\$\(PY\) (-m pytest [^\n$]+)", make, re.M)
    assert command is not None, "Makefile has no test-gpu target running pytest"
    args = command.group(1).split()[2:]  # -m gpu -rs tests/trainer
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-3000:]
    skipped = re.findall(r"^SKIPPED \[\d+\] (\S+?):\d+: (.+)$", out, re.M)
    assert skipped and not re.search(r"\d+ (passed|failed)", out), out[-3000:]
    assert all("CUDA" in why or "unsloth" in why for _, why in skipped), skipped
    files = {Path(f).name for f, _ in skipped}
    doc = (ROOT / "docs" / "models.md").read_text()
    table = set(re.findall(r"^\| `(tests/trainer/[\w/]+\.py)::\w+`", doc, re.M))
    assert {Path(t).name for t in table} == files


def test_the_unsloth_extra_is_declared() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(req.startswith("unsloth") for req in extras["unsloth"])
    assert not any("unsloth" in req for req in extras["trainer"])  # CPU installs stay lean
