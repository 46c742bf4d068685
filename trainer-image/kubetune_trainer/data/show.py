"""`kubetune prepare --show N`: prepared examples as the model sees them.

With the job's tokenizer, each SFT example is tokenized exactly as training does
(data.tokenize: template, BOS/EOS, truncation) and decoded back with its special tokens;
the tokens with label -100 (no loss: the prompt under completionOnlyLoss) are printed
under a `masked` header, the trained ones under `trained`. Without a tokenizer the
rendered text is printed (template auto falls back to alpaca) and the tokens are not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubetune_api.spec_data import DatasetSpec

from .templates import messages_of, render
from .tokenize import IGNORE, tokenize


def _part(title: str, text: str) -> list[str]:
    return [f"--- {title} ---", text]


def show_example(rec: dict[str, Any], kind: str, tokenizer: Any, ds: DatasetSpec) -> list[str]:
    """The lines that show one prepared record."""
    if kind == "sft" and tokenizer is not None:
        one = tokenize("sft", [rec], tokenizer, ds)
        ids, labels = one.input_ids[0], one.labels[0]
        n_masked = next((i for i, lab in enumerate(labels) if lab != IGNORE), len(labels))
        cut = " (truncated to maxSeqLength)" if one.truncated else ""
        lines = [f"{len(ids)} tokens{cut}"]
        if n_masked:
            lines += _part(f"prompt: {n_masked} tokens, masked (label -100, no loss)",
                           tokenizer.decode(ids[:n_masked]))  # fmt: skip
        trained = "completion" if n_masked else "prompt + completion"
        return lines + _part(f"{trained}: {len(ids) - n_masked} tokens, trained (loss)",
                             tokenizer.decode(ids[n_masked:]))  # fmt: skip
    if kind == "sft":
        prompt, completion = render(messages_of(rec, ds.system_prompt), None,
                                    "alpaca" if ds.template == "auto" else ds.template)  # fmt: skip
        masked = "masked (no loss)" if ds.completion_only_loss else "trained"
        return [*_part(f"prompt, {masked}", prompt), *_part("completion, trained", completion)]
    if kind in ("text", "classification"):
        if tokenizer is not None:
            ids = tokenize(kind, [rec], tokenizer, ds).input_ids[0]
            text = tokenizer.decode(ids)
            head = f"text: {len(ids)} tokens, " + ("trained (loss)" if kind == "text" else
                                                     f"class {rec['label']}")  # fmt: skip
            return _part(head, text)
        return _part("text" + (f", class {rec['label']}" if kind == "classification" else ""),
                     rec["text"])  # fmt: skip
    answers = rec.get("responses") or [rec["chosen"], rec["rejected"]]
    names = ["chosen", "rejected"] if "chosen" in rec else [f"response {i + 1}" for i in
                                                             range(len(answers))]  # fmt: skip
    lines = _part("prompt, masked (no loss)", rec["prompt"])
    for name, answer in zip(names, answers, strict=True):
        lines += _part(name, answer)
    return lines


def show_examples(
    records: Iterable[dict[str, Any]], n: int, kind: str, tokenizer: Any, ds: DatasetSpec
) -> str:
    """The first `n` records, each under a header naming its source line."""
    out: list[str] = []
    for i, rec in enumerate(records):
        if i >= n:
            break
        where = (rec.get("meta") or {}).get("source", "")
        body = show_example(rec, kind, tokenizer, ds)
        out += [f"=== example {i + 1} ({where}) ===", *body, ""]
    return "\n".join(out)
