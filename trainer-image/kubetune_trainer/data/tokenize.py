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
from itertools import islice
from typing import Any

from kubetune_api.spec_data import DatasetSpec

from .templates import messages_of, render_batch, resolve

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


# Rows a tokenizer call sees: large enough for the fast tokenizer's batching, small enough
# that a batch's Python lists (~36 bytes a token before truncation) stay a few MB.
BATCH = 256


def _ids(tokenizer: Any, texts: list[str], special: bool) -> list[list[int]]:
    if not texts:
        return []
    backend = _backend(tokenizer)
    if backend is not None:
        # The Rust tokenizer directly: the same ids as tokenizer(texts) (tested), without
        # offsets (encode_batch_fast) or transformers' per-encoding conversion to dicts.
        encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
        return [e.ids for e in encode(texts, add_special_tokens=special)]
    # No attention mask (a second list as long as the ids) and no copy: this batch's ids
    # are the largest Python object tokenization holds.
    enc = tokenizer(texts, add_special_tokens=special, return_attention_mask=False,
                    return_token_type_ids=False)  # fmt: skip
    return enc["input_ids"]


def _backend(tokenizer: Any) -> Any:
    """The fast tokenizer's Rust backend when calling it directly gives what tokenizer(...)
    would: no truncation or padding left set on it (a truncating call elsewhere sets them;
    tokenizer(...) resets them), and special tokens split as the wrapper would."""
    if not getattr(tokenizer, "is_fast", False):
        return None  # a slow (Python) tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.truncation is not None or backend.padding is not None:
        return None
    split = bool(getattr(tokenizer, "split_special_tokens", False))
    if getattr(backend, "encode_special_tokens", split) != split:
        return None
    return backend


# --- one batch of records -> columns (input_ids, labels, length, truncated) ----------------
# The one implementation of the rules above: `tokenize` (in memory) and arrow_tokens
# (Dataset.map, picklable module-level functions) both call these.


def sft_pieces(
    recs: list[dict[str, Any]], tok: Any, ds: DatasetSpec
) -> tuple[list[list[int]], list[list[int]], list[bool]]:
    """(prompt ids, completion ids, cut) per record, the EOS and truncation rules applied."""
    max_len, chat, eos = ds.max_seq_length, resolve(ds.template, tok) == "chat", tok.eos_token_id
    prompts, completions = [], []
    conversations = [messages_of(rec, ds.system_prompt) for rec in recs]
    for prompt, completion in render_batch(conversations, tok, ds.template):
        if tok.eos_token and completion.rstrip().endswith(tok.eos_token):
            completion = completion.rstrip()  # the template closed the turn with EOS already
        prompts.append(prompt)
        completions.append(completion)
    # A chat template writes its own BOS; other layouts let the tokenizer add it.
    ps, cs, cuts = [], [], []
    for p, c in zip(_ids(tok, prompts, not chat), _ids(tok, completions, False), strict=True):
        if eos is not None and (not c or c[-1] != eos):
            c.append(eos)
        cut = len(p) + len(c) > max_len
        if cut:
            keep_p = max(min(len(p), max_len // 2), max_len - len(c))
            p = p[len(p) - keep_p :] if keep_p > 0 else []
            c = c[: max_len - len(p)]
        ps.append(p)
        cs.append(c)
        cuts.append(cut)
    return ps, cs, cuts


def sft_batch(recs: list[dict[str, Any]], tok: Any, ds: DatasetSpec) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "length": [], "truncated": []}
    for p, c, cut in zip(*sft_pieces(recs, tok, ds), strict=True):
        out["input_ids"].append(p + c)
        out["labels"].append(([IGNORE] * len(p) if ds.completion_only_loss else p) + c)
        out["length"].append(len(p) + len(c))
        out["truncated"].append(cut)
    return out


def text_batch(recs: list[dict[str, Any]], tok: Any, ds: DatasetSpec) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "length": [], "truncated": []}
    eos = tok.eos_token_id
    for ids in _ids(tok, [r["text"] for r in recs], True):
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        cut = len(ids) > ds.max_seq_length
        ids = ids[: ds.max_seq_length]
        out["input_ids"].append(ids)
        out["labels"].append(list(ids))  # its own list: a caller may edit labels in place
        out["length"].append(len(ids))
        out["truncated"].append(cut)
    return out


def classification_batch(
    recs: list[dict[str, Any]], tok: Any, ds: DatasetSpec
) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "length": [], "truncated": []}
    texts = [r["text"] for r in recs]
    full = _ids(tok, texts, True)
    long = [i for i, ids in enumerate(full) if len(ids) > ds.max_seq_length]
    if long:  # the tokenizer's own truncation (special tokens kept)
        enc = tok([texts[i] for i in long], truncation=True, max_length=ds.max_seq_length)
        for i, ids in zip(long, enc["input_ids"], strict=True):
            full[i] = list(ids)
    cut = set(long)
    for i, (ids, rec) in enumerate(zip(full, recs, strict=True)):
        out["input_ids"].append(ids)
        out["labels"].append(int(rec["label"]))
        out["length"].append(len(ids))
        out["truncated"].append(i in cut)
    return out


BATCHES = {"sft": sft_batch, "text": text_batch, "classification": classification_batch}


def tokenize(
    kind: str, records: Iterable[dict[str, Any]], tokenizer: Any, dataset: DatasetSpec
) -> TokenizedSet:
    """Dispatch by record kind (sft, text, classification); BATCH records per call."""
    if kind not in BATCHES:
        raise ValueError(f"records of kind {kind!r} are tokenized by their recipe (dpo/ranking)")
    if kind == "sft":
        resolve(dataset.template, tokenizer)  # a bad template fails even with no records
    out, it = TokenizedSet(), iter(records)
    while batch := list(islice(it, BATCH)):
        cols = BATCHES[kind](batch, tokenizer, dataset)
        out.input_ids += cols["input_ids"]
        out.labels += cols["labels"]
        out.truncated += sum(cols["truncated"])
    return out


def tokenize_sft(
    records: Iterable[dict[str, Any]], tokenizer: Any, dataset: DatasetSpec
) -> TokenizedSet:
    return tokenize("sft", records, tokenizer, dataset)


def tokenize_text(
    records: Iterable[dict[str, Any]], tokenizer: Any, dataset: DatasetSpec
) -> TokenizedSet:
    return tokenize("text", records, tokenizer, dataset)


def tokenize_classification(
    records: Iterable[dict[str, Any]], tokenizer: Any, dataset: DatasetSpec
) -> TokenizedSet:
    return tokenize("classification", records, tokenizer, dataset)
