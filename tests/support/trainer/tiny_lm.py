"""Shared by kubetune's evaluation/export/serving/preference tests: a tiny finance_qa job,
a tiny Llama built offline (the engine's builtin:tiny-llama builder) and a LoRA adapter
with non-zero weights, so base and base + adapter really differ.

The `tiny_dirs` fixture over them lives in tests/support/trainer/fixtures.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune_api.loader import parse_job
from kubetune_api.spec import FineTuneJob

TICKERS = ["AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "GOOG"]


def finance_rows(n: int = 18) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        t = TICKERS[i % len(TICKERS)]
        live = i % 3 == 0  # every third asks for live data: placeholders required
        row = {
            "question": f"How did {t} do last quarter?" if not live else f"What is {t} trading at?",
            "answer": f"{t} grew revenue {5 + i} percent."
            if not live
            else f"{t} trades at <PRICE>.",
            "rationale": f"The filing for {t} reports it." if not live else "Live data needed.",
            "tickers": [t],
            "citations": [f"{t} 10-Q", f"{t} call"],
            "context_required": live,
            "risk_note": "Not investment advice.",
        }
        if not live:
            row["context"] = f"{t} revenue up {5 + i} percent"
        rows.append(row)
    return rows


def write_finance(path: Path, n: int = 18) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in finance_rows(n)))
    return path


def finance_doc(data: Path, base: str, output: Path | None = None, **spec: Any) -> dict[str, Any]:
    """The FineTuneJob document (YAML/JSON shape) of a tiny finance_qa job."""
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "fin-tiny", "namespace": "default"},
        "spec": {
            "model": {"base": base},
            "dataset": {
                "source": str(data),
                "format": "finance_qa",
                "validation": {"fraction": 0.25},
                "maxSeqLength": 256,
            },
            "evaluation": {"maxSamples": 3, "generation": {"maxNewTokens": 12}},
            "output": {"uri": str(output or data.parent / "runs")},
            **spec,
        },
    }


def finance_job(data: Path, base: str, output: Path | None = None, **spec: Any) -> FineTuneJob:
    return parse_job(finance_doc(data, base, output, **spec))


def tiny_base(cache: Path, texts: list[str] | None = None, seed: int = 0) -> Path:
    """A tiny Llama + tokenizer folder (cached under `cache`)."""
    import os

    from kubetune_trainer.modeling import builtin

    if texts is None:
        texts = [json.dumps(r) for r in finance_rows()]
    old = os.environ.get("KUBETUNE_CACHE")
    os.environ["KUBETUNE_CACHE"] = str(cache)
    try:
        return builtin.build_tiny_llama(texts, seed)
    finally:
        if old is None:
            os.environ.pop("KUBETUNE_CACHE", None)
        else:
            os.environ["KUBETUNE_CACHE"] = old


def random_adapter(base: Path, out: Path, seed: int = 1, r: int = 4) -> Path:
    """A LoRA adapter on every projection with random (non-zero) A and B, plus tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    cfg = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        init_lora_weights=False,  # B is random too, so the adapter changes the outputs
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(0.5)  # keep the tiny model's outputs finite and varied
    peft_model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    return out
