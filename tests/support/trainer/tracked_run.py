"""A tiny tracked training job for the tests that watch a real run (MLflow, Prometheus, S3)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import yaml


def tiny_tracked_job(
    tmp_path: Path, name: str, steps: int, output: str, tracking: dict[str, Any], **spec: Any
) -> Path:
    """job.yaml for builtin:tiny-llama on 64 learnable QA rows, a checkpoint every 4 steps."""
    rnd = random.Random(0)
    data = tmp_path / "qa.jsonl"
    with data.open("w") as f:
        for _ in range(64):  # a learnable pattern: the answer repeats the question's fact
            color, item = rnd.choice(["red", "blue", "green", "gold"]), rnd.choice(["car", "cup"])
            q = f"What color is the {item}? It is {color}."
            f.write(json.dumps({"question": q, "answer": f"The {item} is {color}."}) + "\n")
    body = {
        "model": {"base": "builtin:tiny-llama"},
        "adapter": {"r": 8, "alpha": 16, "dropout": 0.0, "targetModules": ["all-linear"]},
        "dataset": {"source": str(data), "format": "qa", "maxSeqLength": 64},
        "training": {"maxSteps": steps, "microBatchSize": 4, "learningRate": 0.02,
                     "loggingSteps": 1, "scheduler": "constant", "seed": 7, "saveSteps": 4},
        "evaluation": {"enabled": False},
        "output": {"uri": output},
        "tracking": tracking,
        **spec,
    }  # fmt: skip
    job = {"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
           "metadata": {"name": name, "namespace": "test"}, "spec": body}  # fmt: skip
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path
