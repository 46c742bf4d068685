"""Tiny jobs for the jobs API tests (builtin:tiny-llama, a few steps) and a CLI runner."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.support.wait import wait_for

KUBETUNE = [sys.executable, "-m", "kubetune_trainer.cli"]


def write_data(path: Path, n: int = 64) -> Path:
    rnd = random.Random(0)
    colors, items = ["red", "blue", "green", "gold"], ["apple", "car", "sky", "coat"]
    with path.open("w") as f:
        for _ in range(n):
            c, i = rnd.choice(colors), rnd.choice(items)
            q, a = f"What color is the {i}? It is {c}.", f"The {i} is {c}."
            f.write(json.dumps({"question": q, "answer": a}) + "\n")
    return path


def job_doc(name: str, steps: int = 4, save: int = 2, **training: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": "test"},
        "spec": {
            "model": {"base": "builtin:tiny-llama"},
            "adapter": {"r": 4, "alpha": 8, "dropout": 0.0, "targetModules": ["all-linear"]},
            "dataset": {"source": "data.jsonl", "format": "qa", "maxSeqLength": 64},
            "training": {
                "maxSteps": steps,
                "microBatchSize": 4,
                "learningRate": 0.02,
                "loggingSteps": 1,
                "scheduler": "constant",
                "seed": 7,
                "saveSteps": save,
                **training,
            },
            "evaluation": {"enabled": False},
            "output": {"uri": "./runs"},
        },
    }


def write_job(folder: Path, name: str, **kw: Any) -> Path:
    """<folder>/<name>.yaml (and <folder>/data.jsonl, which it reads, relative)."""
    if not (folder / "data.jsonl").exists():
        write_data(folder / "data.jsonl")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job_doc(name, **kw)))
    return path


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KUBETUNE, *args], capture_output=True, text=True, timeout=timeout)


def poll(check: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
    """wait_for at the jobs API's pace (each check may be an HTTP call or a file read)."""
    return wait_for(check, timeout, what, interval=0.3)
