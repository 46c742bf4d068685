"""Records -> token ids and labels.

- SFT: the template (see templates.py) gives prompt and completion text. Prompt tokens get
  label -100 when dataset.completionOnlyLoss is true; the completion ends with exactly one
  EOS (not added again when the chat template already closes the turn with it). When an
  example is longer than maxSeqLength the prompt loses tokens from its START (the question
  nearest the answer is kept), down to at most half the budget, then the completion is cut
  at its END; such examples are counted as truncated.
- text (papers): text + EOS, labels = input ids, cut at the end.
- classification: the tokenizer's own special tokens, cut with truncation=True.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubetune_api.spec_data import DatasetSpec

from .templates import messages_of, render, resolve

IGNORE = -100


@dataclass
class TokenizedSet:
    """Token ids per example; a torch-style dataset of dicts (input_ids, labels)."""

    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)  # list[int] per example, or int (class)
    truncated: int = 0

    @property
    def lengths(self) -> list[int]:
        """Attention length (real tokens) per example."""
        return [len(x) for x in self.input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i]}


def _ids(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def tokenize_sft(
    records: Iterable[dict[str, Any]], tokenizer: Any, dataset: DatasetSpec
) -> TokenizedSet:
    out = TokenizedSet()
    max_len = dataset.max_seq_length
    chat = resolve(dataset.template, tokenizer) == "chat"
    eos = tokenizer.eos_token_id
    for rec in records:
        prompt, completion = render(
            messages_of(rec, dataset.system_prompt), tokenizer, dataset.template
        )
        eos_text = tokenizer.eos_token
        if eos_text and completion.rstrip().endswith(eos_text):
            completion = completion.rstrip()  # the template closed the turn with EOS already
        # A chat template writes its own BOS; other layouts let the tokenizer add it.
        p = _ids(tokenizer, prompt, special=not chat)
        c = _ids(tokenizer, completion, special=False)
        if eos is not None and (not c or c[-1] != eos):
            c.append(eos)
        if len(p) + len(c) > max_len:
            out.truncated += 1
            keep_p = max(min(len(p), max_len // 2), max_len - len(c))
            p = p[len(p) - keep_p :] if keep_p > 0 else []
            c = c[: max_len - len(p)]
        out.input_ids.append(p + c)
        out.labels.append(([IGNORE] * len(p) if dataset.completion_only_loss else p) + c)
    return out


def tokenize_text(
    records: Iterable[dict[str, Any]], tokenizer: Any, dataset: DatasetSpec
) -> TokenizedSet:
    out = TokenizedSet()
    eos = tokenizer.eos_token_id
    for rec in records:
        ids = _ids(tokenizer, rec["text"], special=True)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        if len(ids) > dataset.max_seq_length:
            out.truncated += 1
            ids = ids[: dataset.max_seq_length]
        out.input_ids.append(ids)
        out.labels.append(list(ids))
    return out


def tokenize_classification(
    records: Iterable[dict[str, Any]], tokenizer: Any, dataset: DatasetSpec
) -> TokenizedSet:
    out = TokenizedSet()
    for rec in records:
        ids = _ids(tokenizer, rec["text"], special=True)
        if len(ids) > dataset.max_seq_length:
            out.truncated += 1
            enc = tokenizer(rec["text"], truncation=True, max_length=dataset.max_seq_length)
            ids = list(enc["input_ids"])
        out.input_ids.append(ids)
        out.labels.append(int(rec["label"]))
    return out


def tokenize(
    kind: str, records: Iterable[dict[str, Any]], tokenizer: Any, dataset: DatasetSpec
) -> TokenizedSet:
    """Dispatch by record kind (sft, text, classification)."""
    fn = {"sft": tokenize_sft, "text": tokenize_text, "classification": tokenize_classification}
    if kind not in fn:
        raise ValueError(f"records of kind {kind!r} are tokenized by their recipe (dpo/ranking)")
    return fn[kind](records, tokenizer, dataset)
