"""Run a model: batched generation with recorded settings, and validation loss/perplexity.

Loss uses the data layer's own tokenization (same template, same completion-only masking
as training), so an eval loss here is comparable with the trainer's `eval_loss`.
"""

from __future__ import annotations

import math
from typing import Any

from kubetune_api.spec_data import DatasetSpec
from kubetune_api.spec_training import GenerationOptions
from kubetune_trainer.data.templates import render_prompt
from kubetune_trainer.data.tokenize import IGNORE, tokenize

from .models import LoadedModel

Record = dict[str, Any]


def generation_params(gen: GenerationOptions) -> dict[str, Any]:
    """The settings recorded next to every generated result."""
    return {
        "max_new_tokens": gen.max_new_tokens,
        "temperature": gen.temperature,
        "top_p": gen.top_p,
        "seed": gen.seed,
        "decoding": "greedy" if gen.temperature == 0 else "sampling",
    }


def format_prompts(records: list[Record], tokenizer: Any, dataset: DatasetSpec) -> list[str]:
    """Each record's prompt in the layout the model was trained on."""
    return [
        render_prompt(r["prompt"], tokenizer, dataset.template, dataset.system_prompt)
        for r in records
    ]


def generate(
    lm: LoadedModel, prompts: list[str], gen: GenerationOptions, batch_size: int = 8
) -> list[str]:
    """The completion text of every prompt (special tokens and the prompt stripped)."""
    import torch

    tok, model = lm.tokenizer, lm.model
    device = next(model.parameters()).device
    # One generator seeded once: the same seed and settings give the same outputs.
    torch.manual_seed(gen.seed)
    kwargs: dict[str, Any] = {
        "max_new_tokens": gen.max_new_tokens,
        "pad_token_id": tok.pad_token_id,
    }
    if gen.temperature > 0:
        kwargs.update(do_sample=True, temperature=gen.temperature, top_p=gen.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    # A chat template writes its own BOS; plain/alpaca prompts let the tokenizer add it.
    special = not bool(getattr(tok, "chat_template", None))
    outputs: list[str] = []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=special)
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.no_grad():
            out = model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1] :]
        outputs += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    return outputs


def validation_loss(
    lm: LoadedModel, kind: str, records: list[Record], dataset: DatasetSpec, batch_size: int = 8
) -> dict[str, float]:
    """Token-weighted mean NLL over the target tokens, its perplexity, and the token count."""
    import torch

    data = tokenize(kind, records, lm.tokenizer, dataset)
    model = lm.model
    device = next(model.parameters()).device
    pad = lm.tokenizer.pad_token_id or 0
    total_nll, total_tokens = 0.0, 0
    for i in range(0, len(data), batch_size):
        ids, labels = data.input_ids[i : i + batch_size], data.labels[i : i + batch_size]
        width = max(len(x) for x in ids)
        # Right padding: positions stay 0..n-1 exactly as in training.
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=device)
        lab = torch.tensor([y + [IGNORE] * (width - len(y)) for y in labels], device=device)
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
        # Token t predicts token t+1; sum (not mean) so batches weigh by their token count.
        shift_logits, shift_labels = logits[:, :-1], lab[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            shift_logits.reshape(-1, shift_logits.size(-1)),
            shift_labels.reshape(-1),
            ignore_index=IGNORE,
            reduction="sum",
        )
        total_nll += float(nll)
        total_tokens += int((shift_labels != IGNORE).sum())
    mean = total_nll / total_tokens if total_tokens else float("nan")
    return {
        "loss": mean,
        "perplexity": math.exp(mean) if total_tokens else float("nan"),
        "loss_tokens": float(total_tokens),
    }
