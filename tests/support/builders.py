"""Pure builders for tests: FineTuneJobs, JSONL files, small learnable data sets.

`make_job` is the one FineTuneJob builder: a base spec (the engine's train-ready BASE_SPEC
by default, MINIMAL_SPEC for tests that never train) with sections deep-merged over it.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubetune_api.loader import parse_job
from kubetune_api.spec import FineTuneJob
from kubetune_trainer.records import PreparedDataset

COLORS = ["red", "blue", "green", "black", "white", "gold", "pink", "gray"]
ITEMS = ["apple", "car", "sky", "coat", "door", "ring", "cup", "lamp"]

# A tiny Llama that trains on CPU in seconds: learnable QA data, constant LR, no eval.
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
# Just what the schema requires: for tests of validation, launch and config mapping.
MINIMAL_SPEC: dict[str, Any] = {
    "model": {"base": "builtin:tiny-llama"},
    "dataset": {"source": "data.jsonl", "format": "instruction"},
}


def merge(dst: dict[str, Any], src: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `src` into `dst` (mappings merge, anything else replaces); returns `dst`."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def job_doc(
    spec: dict[str, Any], name: str = "t", namespace: str | None = "test"
) -> dict[str, Any]:
    """A FineTuneJob manifest around `spec` (no namespace in metadata when it is None)."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": metadata,
        "spec": spec,
    }


def make_job(
    output: str | Path | None = None,
    name: str = "t",
    *,
    namespace: str | None = "test",
    base: Mapping[str, Any] = BASE_SPEC,
    **spec: Any,
) -> FineTuneJob:
    """A parsed FineTuneJob: `base` with `spec` sections merged over it, output.uri=`output`."""
    data = merge(copy.deepcopy(dict(base)), spec)
    if output is not None:
        data.setdefault("output", {})["uri"] = str(output)
    return parse_job(job_doc(data, name, namespace))


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows as JSONL; a str row is written verbatim (for broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


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


def write_qa_jsonl(path: Path, n: int, seed: int = 0) -> Path:
    """`n` qa_records as a question/answer JSONL file."""
    rows = [{"question": r["prompt"], "answer": r["completion"]} for r in qa_records(n, seed)]
    return write_jsonl(path, rows)


def prepared(n_train: int = 48, n_val: int = 12) -> PreparedDataset:
    return PreparedDataset(
        kind="sft",
        format="qa",
        train=qa_records(n_train, 1),
        validation=qa_records(n_val, 2),
        fingerprint="sha256:test",
    )


def train_losses(run_dir: Path) -> dict[int, float]:
    text = (run_dir / "report" / "metrics.jsonl").read_text()
    rows = [json.loads(x) for x in text.splitlines() if x.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}
