"""Builders for the data tests: the tokenizer corpus and FineTuneJobs around one dataset.

The `tokenizer` and `chat_tokenizer` fixtures over CORPUS live in
tests/support/trainer/fixtures.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune_api.loader import parse_job
from kubetune_api.spec import FineTuneJob
from tests.support.builders import job_doc, write_jsonl
from tests.support.servers.plugin import S3_BUCKET

REPO = Path(__file__).resolve().parents[3]
__all__ = ["CHAT_TEMPLATE", "CORPUS", "REPO", "S3_BUCKET", "dataset_job", "job_dict", "write_jsonl"]

CORPUS = """The patient asked about blood pressure and the doctor answered with care.
Answer: Hold the shares. Rationale: revenue grew while margins held. Citations: [1] 10-K.
Risk: prices move. BRCA1 TP53 p.Val600Glu rs429358 ACGTTGCA genome sequencing variants.
Below is an instruction that describes a task. Write a response that appropriately
completes the request. ### Instruction: ### Response: user assistant system
"""
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def job_dict(source: str, **dataset: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"base": "builtin:tiny-llama"},
        "dataset": {"source": source, **dataset},
    }
    for key in ("objective", "model", "training"):
        if f"_{key}" in dataset:
            val = spec["dataset"].pop(f"_{key}")
            spec[key] = {**spec.get(key, {}), **val} if isinstance(val, dict) else val
    return job_doc(spec, "t", "default")


def dataset_job(source: str | Path, **dataset: Any) -> FineTuneJob:
    """dataset_job(source, format=..., _objective="dpo", _model={...}, ...) -> FineTuneJob."""
    return parse_job(job_dict(str(source), **dataset))
