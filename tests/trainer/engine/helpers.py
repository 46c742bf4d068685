"""Small jobs and data for the engine tests (tiny models, CPU, seconds each)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

from kubetune_api.loader import parse_job
from kubetune_api.spec import FineTuneJob
from kubetune_trainer.records import PreparedDataset

COLORS = ["red", "blue", "green", "black", "white", "gold", "pink", "gray"]
ITEMS = ["apple", "car", "sky", "coat", "door", "ring", "cup", "lamp"]


def qa_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """A learnable pattern: the answer repeats facts from the question."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        c, i = rnd.choice(COLORS), rnd.choice(ITEMS)
        out.append(
            {"prompt": f"What color is the {i}? It is {c}.", "completion": f"The {i} is {c}."}
        )
    return out


def prepared(n_train: int = 48, n_val: int = 12) -> PreparedDataset:
    return PreparedDataset(
        kind="sft",
        format="qa",
        train=qa_records(n_train, 1),
        validation=qa_records(n_val, 2),
        fingerprint="sha256:test",
    )


def write_jsonl(path: Path, n: int, seed: int = 0) -> Path:
    rows = [{"question": r["prompt"], "answer": r["completion"]} for r in qa_records(n, seed)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


BASE_SPEC: dict[str, Any] = {
    "model": {"base": "builtin:tiny-llama"},
    "adapter": {"r": 8, "alpha": 16, "dropout": 0.0, "targetModules": ["all-linear"]},
    "dataset": {"source": "unused.jsonl", "format": "qa", "maxSeqLength": 64},
    "training": {
        "maxSteps": 20,
        "microBatchSize": 4,
        "learningRate": 0.02,
        "loggingSteps": 1,
        "scheduler": "constant",
        "seed": 7,
    },
    "evaluation": {"enabled": False},
}


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def make_job(output: Path, name: str = "t", **spec: Any) -> FineTuneJob:
    data = _merge(copy.deepcopy(BASE_SPEC), spec)
    data.setdefault("output", {})["uri"] = str(output)
    return parse_job(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": name, "namespace": "test"},
            "spec": data,
        }
    )


def train_losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run_dir / "report" / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}
