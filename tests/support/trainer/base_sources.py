"""Helpers for test_base_sources.py: a tiny Llama in a folder of its own, an S3 upload of
it, jobs whose output block is spelled out, and what an adapter file holds.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path
from typing import Any

from safetensors import safe_open

from kubetune_api.loader import parse_job
from kubetune_api.spec import FineTuneJob
from kubetune_trainer.engine.setup import training_texts
from tests.support.builders import BASE_SPEC, job_doc, merge, prepared

SEED = BASE_SPEC["training"]["seed"]


def tiny_llama_copy(dest: Path) -> Path:
    """The builtin tiny Llama (config, safetensors, tokenizer) copied to a plain folder, as a
    user would hold a model: no cache marker, nothing tying it to kubetune's cache."""
    from kubetune_trainer.modeling import builtin

    built = builtin.build_tiny_llama(training_texts(prepared()), SEED)
    dest.mkdir(parents=True, exist_ok=True)
    for f in built.iterdir():
        if f.is_file() and not f.name.startswith("."):
            shutil.copy2(f, dest / f.name)
    return dest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload_folder(client: Any, folder: Path, bucket: str, prefix: str) -> dict[str, str]:
    """Every file of `folder` under s3://bucket/prefix/; returns name -> sha256."""
    sent = {}
    for f in sorted(folder.iterdir()):
        if f.is_file():
            client.upload_file(str(f), bucket, f"{prefix}/{f.name}")
            sent[f.name] = sha256(f)
    return sent


def s3_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def job(output: dict[str, Any], name: str = "t", **spec: Any) -> FineTuneJob:
    """make_job's job with the whole output block (uri, s3Endpoint) given."""
    data = merge(copy.deepcopy(BASE_SPEC), spec)
    data["output"] = output
    return parse_job(job_doc(data, name))


def tensor_names(safetensors_file: Path) -> list[str]:
    with safe_open(str(safetensors_file), "pt") as f:
        return list(f.keys())


def first_last(losses: dict[int, float], k: int = 3) -> tuple[float, float]:
    steps = sorted(losses)
    return sum(losses[s] for s in steps[:k]) / k, sum(losses[s] for s in steps[-k:]) / k
