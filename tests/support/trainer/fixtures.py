"""Trainer fixtures shared across test folders (a pytest plugin, loaded by tests/conftest.py):
an offline BPE tokenizer (plain and with a chat template) and the tiny Llama + LoRA dirs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.support.trainer.data import CHAT_TEMPLATE, CORPUS
from tests.support.trainer.tiny_lm import random_adapter, tiny_base, write_finance


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


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{root, data, base, adapter}: finance_qa rows, a tiny Llama built from them, a LoRA."""
    root = tmp_path_factory.mktemp("tiny")
    data = write_finance(root / "data" / "train.jsonl")
    base = tiny_base(root / "cache")
    adapter = random_adapter(base, root / "adapter")
    return {"root": root, "data": data, "base": base, "adapter": adapter}
