"""Load a causal LM for inference: a base, base + LoRA adapter, or a merged model.

Shared by evaluation, comparison, export and serving. Training loads models through the
engine (quantization, device maps); inference here always loads full-precision weights,
because generation quality is what is being judged and merging into 4-bit weights is
lossy (see export/merge.py).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune_api.uris import scheme_of
from kubetune_trainer.errors import ConfigError

ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel or a peft PeftModel
    tokenizer: Any
    base: str  # where the base came from
    adapter: str | None  # where the adapter came from (None: the base alone)

    @property
    def label(self) -> str:
        return f"{self.base} + {self.adapter}" if self.adapter else self.base


def localize_dir(uri: str) -> Path:
    """A local folder holding the files under `uri` (downloaded once from s3://)."""
    if scheme_of(uri) == "s3":
        from kubetune_trainer.storage import fetch

        dest = (
            Path(tempfile.gettempdir())
            / "kubetune-fetch"
            / hashlib.sha256(uri.encode()).hexdigest()[:24]
        )
        return fetch(uri, dest)
    path = Path(uri.removeprefix("file://")).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{uri}: no such folder")
    return path


def resolve_base(uri: str) -> str:
    """A path or hub id transformers can load."""
    scheme = scheme_of(uri)
    if scheme == "builtin":
        from kubetune_trainer.modeling import builtin

        name = uri.split(":", 1)[1]
        if name == "smollm2-135m-instruct":
            return str(builtin.smollm2_dir())
        # tiny-llama is built from the training text: its adapter records the built folder.
        raise ConfigError(
            f"{uri} is built from a job's training text; pass the adapter (its "
            "adapter_config.json names the built base) or the job file"
        )
    if scheme in ("s3", "file"):
        return str(localize_dir(uri))
    return uri


def adapter_base(adapter_dir: Path) -> str:
    """The base model an adapter was trained on, from its adapter_config.json."""
    cfg = adapter_dir / ADAPTER_CONFIG
    if not cfg.is_file():
        raise ConfigError(f"{adapter_dir}: not a LoRA adapter (no {ADAPTER_CONFIG})")
    base = json.loads(cfg.read_text()).get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{cfg}: base_model_name_or_path is empty; pass the base explicitly")
    return str(base)


def load_model(base: str | None, adapter: str | None = None, dtype: str = "float32") -> LoadedModel:
    """Base (+ adapter) in eval mode on the CPU or the first GPU, tokenizer padded left."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir = localize_dir(adapter) if adapter else None
    if base is None:
        if adapter_dir is None:
            raise ConfigError("give a base model, an adapter, or both")
        base = adapter_base(adapter_dir)
    path = resolve_base(base)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    # The adapter folder carries the tokenizer used in training (pad token, chat template).
    tok_src = (
        adapter_dir if adapter_dir and (adapter_dir / "tokenizer_config.json").is_file() else path
    )
    tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation appends on the right
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return LoadedModel(model, tokenizer, base, adapter)
