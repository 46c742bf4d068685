"""Fixtures for the data tests: an offline BPE tokenizer and a FineTuneJob builder."""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:  # a bare `pytest` does not put the root on sys.path
    sys.path.insert(0, str(REPO))

from tests.fixtures.plugin import S3_BUCKET, s3_server  # noqa: E402, F401 - found by name

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


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([CORPUS] * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>",
    )  # fmt: skip


@pytest.fixture(scope="session")
def chat_tokenizer(tokenizer: Any) -> Any:
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows as JSONL; a str row is written verbatim (for broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


def job_dict(source: str, **dataset: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"base": "builtin:tiny-llama"},
        "dataset": {"source": source, **dataset},
    }
    for key in ("objective", "model", "training"):
        if f"_{key}" in dataset:
            val = spec["dataset"].pop(f"_{key}")
            spec[key] = {**spec.get(key, {}), **val} if isinstance(val, dict) else val
    return {"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
            "metadata": {"name": "t", "namespace": "default"}, "spec": spec}  # fmt: skip


@pytest.fixture
def make_job() -> Callable[..., Any]:
    """make_job(source, format=..., _objective="dpo", _model={...}, ...) -> FineTuneJob."""
    from kubetune_api.loader import parse_job

    def build(source: str | Path, **dataset: Any) -> Any:
        return parse_job(job_dict(str(source), **dataset))

    return build
