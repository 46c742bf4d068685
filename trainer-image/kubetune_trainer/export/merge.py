"""Merge a LoRA adapter into its base model and save the result as safetensors.

The base is always reloaded unquantized. An adapter trained on a 4-bit (QLoRA) base
learned its update against the dequantized weights; merging into the 4-bit weights
would re-quantize W + BA and lose most of the update (a known trap), so the merge goes
into the full-precision weights and the export metadata says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from kubetune_trainer.errors import ConfigError
from kubetune_trainer.evaluation.models import adapter_base, localize_dir, resolve_base

EXPORT_INFO = "kubetune-export.json"
DTYPES = ("float32", "bfloat16", "float16")
# The engine's model card line: "- quantization: 4bit; precision bf16".
_CARD_QUANT = re.compile(r"^- quantization: (\w+)", re.MULTILINE)


@dataclass
class MergeResult:
    out_dir: str
    base: str
    adapter: str
    trained_quantization: str  # none | 4bit | 8bit | unknown (from the adapter's model card)
    merged_into: str  # what the weights were merged into, e.g. "float32 base weights"
    dtype: str
    files: dict[str, int]


def trained_quantization(adapter_dir: Path) -> str:
    """How the base was quantized during training, from the adapter's model card."""
    card = adapter_dir / "README.md"
    if card.is_file():
        m = _CARD_QUANT.search(card.read_text(encoding="utf-8"))
        if m:
            return m.group(1)
    return "unknown"


def merge_adapter(
    adapter: str, out_dir: str | Path, base: str | None = None, dtype: str = "float32"
) -> MergeResult:
    """base + adapter -> a plain transformers model folder (weights + config + tokenizer)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    adapter_dir = localize_dir(adapter)
    base = base or adapter_base(adapter_dir)
    quant = trained_quantization(adapter_dir)
    # No quantization_config here, whatever training used: see the module docstring.
    model = AutoModelForCausalLM.from_pretrained(resolve_base(base), dtype=getattr(torch, dtype))
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    merged = model.merge_and_unload(safe_merge=True)  # safe_merge: fail on NaNs
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    tok_src = (
        adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else resolve_base(base)
    )
    AutoTokenizer.from_pretrained(str(tok_src)).save_pretrained(out)
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    result = MergeResult(
        out_dir=str(out),
        base=base,
        adapter=adapter,
        trained_quantization=quant,
        merged_into=f"{dtype} base weights (reloaded unquantized)",
        dtype=dtype,
        files=files,
    )
    (out / EXPORT_INFO).write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result
