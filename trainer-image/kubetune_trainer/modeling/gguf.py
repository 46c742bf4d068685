"""GGUF (llama.cpp) checkpoints -> a regular safetensors folder, converted once and cached.

transformers dequantizes GGUF on load but refuses to save_pretrained such a model, so
the weights are moved into a fresh model built from the same config (without the GGUF
quantization config) and that one is saved. The cache key is the file's sha256.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..storage.base import sha256_file
from .cache import cached_dir

log = logging.getLogger(__name__)


def convert_gguf(path: Path) -> Path:
    """Folder with config, safetensors weights and tokenizer converted from a .gguf file."""
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} does not exist")
    key = sha256_file(path)[:32]
    return cached_dir("gguf", key, lambda out: _convert(path, out))


def _convert(path: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    t0 = time.monotonic()
    log.info("converting GGUF %s (one time, then cached)", path.name)
    src, name = str(path.parent), path.name
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src, gguf_file=name)
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings appear only once in the GGUF; anything else missing is a bug.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
    fresh.save_pretrained(out)
    AutoTokenizer.from_pretrained(src, gguf_file=name).save_pretrained(out)
    log.info("GGUF converted in %.1f s", time.monotonic() - t0)
