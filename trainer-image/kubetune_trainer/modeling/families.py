"""Tiny random-weight models of each supported family, built offline from a config.

Each family gets the architecture class the real checkpoints use (Llama; Mistral;
Qwen2, the architecture of the DeepSeek-R1 1.5B/7B/14B/32B distills; Gemma), tiny
shapes, and a byte-level BPE tokenizer trained on the given text with that family's
special tokens and (a faithful subset of) its chat template. Deterministic given the
text and the seed; cached like builtin:tiny-llama. Tests, benchmarks and examples use
these to run every family end to end (train, resume, merge, GGUF, llama.cpp, serve)
without a model hub.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kubetune_trainer.errors import ConfigError

from .builtin import TINY_LLAMA
from .cache import cached_dir

_BUILDER_VERSION = "1"  # bump when a recipe below changes (new cache keys)

# The tiny Llama's shape for every family: rows of 64 and 128 values so q8_0/q4_0 blocks
# (32) fit.
SHAPE = {k: v for k, v in TINY_LLAMA.items() if k != "vocab_target"}

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Mistral-Instruct: [INST] user [/INST] answer</s>; a system prompt goes before the
# first user turn, as Mistral's own template does.
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% set sys = namespace(text='') %}"
    "{% for m in messages %}{% if m['role'] == 'system' %}"
    "{% set sys.text = m['content'] + '\n\n' %}"
    "{% elif m['role'] == 'user' %}[INST] {{ sys.text }}{{ m['content'] }} [/INST]"
    "{% set sys.text = '' %}{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
# DeepSeek-R1-Distill-Qwen: <｜User｜>...<｜Assistant｜>...<｜end▁of▁sentence｜>, system first.
R1_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}"
    "{% elif m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
    "{% else %}<｜Assistant｜>{{ m['content'] }}<｜end▁of▁sentence｜>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}"
)
# Gemma: no system role (its text leads the first user turn); the assistant is "model".
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% set sys = namespace(text='') %}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set sys.text = m['content'] + '\n\n' %}"
    "{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{% if m['role'] == 'user' %}{{ sys.text }}{% set sys.text = '' %}{% endif %}"
    "{{ m['content'] }}<end_of_turn>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@dataclass(frozen=True)
class Family:
    name: str
    architecture: str  # config.json "architectures"[0], what the GGUF exporter checks
    config_class: str
    bos: str
    eos: str
    pad: str
    chat_template: str
    extra_special: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    tie_word_embeddings: bool = True


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("llama", "LlamaForCausalLM", "LlamaConfig", "<|im_start|>", "<|im_end|>",
               "<pad>", CHATML, ("<|endoftext|>",)),
        Family("mistral", "MistralForCausalLM", "MistralConfig", "<s>", "</s>", "<pad>",
               MISTRAL_TEMPLATE, ("[INST]", "[/INST]"), {"sliding_window": 4096},
               tie_word_embeddings=False),
        Family("qwen2", "Qwen2ForCausalLM", "Qwen2Config", "<｜begin▁of▁sentence｜>",
               "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", R1_TEMPLATE,
               ("<｜User｜>", "<｜Assistant｜>")),
        Family("gemma", "GemmaForCausalLM", "GemmaConfig", "<bos>", "<eos>", "<pad>",
               GEMMA_TEMPLATE, ("<start_of_turn>", "<end_of_turn>"),
               {"head_dim": 16, "hidden_activation": "gelu_pytorch_tanh"}),
    )
}  # fmt: skip


def build_tiny(family: str, texts: Iterable[str], seed: int = 0, vocab: int = 512) -> Path:
    """Folder holding a tiny model of `family` + its tokenizer (cached; same input, same files)."""
    if family not in FAMILIES:
        raise ConfigError(f"tiny model family {family!r}: use one of {', '.join(FAMILIES)}")
    texts = list(texts)
    if not texts:
        raise ConfigError(f"tiny-{family}: the tokenizer needs training text, and none was given")
    fam = FAMILIES[family]
    h = hashlib.sha256(f"{_BUILDER_VERSION}|{seed}|{vocab}|{fam!r}|{json.dumps(SHAPE)}".encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return cached_dir(
        f"tiny-{family}", h.hexdigest()[:24], lambda d: _write(d, fam, texts, seed, vocab)
    )


def train_tokenizer(texts: list[str], special: list[str], vocab: int) -> Any:
    """A byte-level BPE (GPT-2 split) trained on `texts`; `special` tokens get the first ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _write(out: Path, fam: Family, texts: list[str], seed: int, vocab: int) -> None:
    import transformers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    special = [fam.bos, fam.eos, fam.pad, *fam.extra_special]
    tok = train_tokenizer(texts, special, vocab)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=fam.bos, eos_token=fam.eos, pad_token=fam.pad,
        unk_token=None, additional_special_tokens=list(fam.extra_special),
    )  # fmt: skip
    fast.chat_template = fam.chat_template
    fast.save_pretrained(out)
    config = getattr(transformers, fam.config_class)(
        vocab_size=len(fast),
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=fam.tie_word_embeddings,
        **SHAPE,
        **fam.config,
    )
    config.architectures = [fam.architecture]
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        model = AutoModelForCausalLM.from_config(config)
        if fam.name == "qwen2":
            # Qwen2 has q/k/v biases that start at zero; give them values so a
            # dropped or misnamed bias shows in the exported model's logits.
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name.endswith("proj.bias"):
                        p.normal_(0.0, 0.02)
    model.save_pretrained(out)
