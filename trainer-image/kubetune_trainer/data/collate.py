"""Batching: dynamic padding, and packing short examples into fixed rows.

Packing modes (dataset.packing):

- `none`: `PaddingCollator` pads each batch to its longest example, rounded up to a
  multiple of 8, with attention_mask and labels -100 on padding.
- `position_ids`: `pack_position_ids` puts whole examples into rows of maxSeqLength
  (best fit, longest first, deterministic, O(n log n)). Each row keeps shape
  (batch, max_len); position ids restart at 0 for every example and the first label of
  every example is -100, so no token learns to predict across a boundary.
  `PackedCollator` leaves attention_mask out on purpose: transformers then builds a
  block-diagonal mask from the restarting position ids, so attention never crosses
  examples. The model must run with use_cache=False.
- `wrapped`: `pack_wrapped` concatenates every example and cuts the stream into
  max_len rows; attention crosses examples (pretraining style). Only when asked for.
- `auto`: position_ids for causal-LM SFT/text on an architecture that supports it, none
  otherwise (see `plan_packing`).

Which architectures support position_ids packing: transformers builds the block mask from
restarting position ids only in models that pass `position_ids` to its masking utilities
(`create_causal_mask` finds packed sequences when attention_mask is None), and only for
standard attention; linear-attention and convolution layers ignore the boundaries (see the
transformers "Padding-free training" guide). `POSITION_ID_PACKING` lists the model types
this project uses and tests for no leakage (tests/trainer/data: the same logits packed and
alone, per model type). Any other architecture, or one not given, falls back to `none`
(dynamic padding) with a note saying why; `wrapped` is never changed (it is asked for).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .tokenize import IGNORE, TokenizedSet

log = logging.getLogger(__name__)

# config.model_type values whose transformers implementation derives per-example attention
# blocks from restarting position ids (Llama 2/3, DeepSeek-R1-Distill-Llama, SmolLM2,
# Mistral, Qwen2). Each is checked by the no-leakage test.
POSITION_ID_PACKING = frozenset({"llama", "mistral", "qwen2"})


@dataclass(frozen=True)
class PackingPlan:
    mode: str  # none | position_ids | wrapped
    note: str = ""  # why the asked-for packing was not used ("" when it was)


def model_type_of(model: Any) -> str | None:
    """config.model_type of a model (peft-wrapped or not), a config, or a model type name."""
    if model is None or isinstance(model, str):
        return model
    config = getattr(model, "config", model)
    return getattr(config, "model_type", None)


def plan_packing(packing: str, task: str, kind: str, model: Any = None) -> PackingPlan:
    """The packing to train with, from dataset.packing, the task, the record kind and the
    model's architecture (`model`: a model, its config or its model_type)."""
    if packing in ("none", "wrapped"):
        return PackingPlan(packing)
    if packing == "auto" and not (task == "causal_lm" and kind in ("sft", "text")):
        return PackingPlan("none")
    model_type = model_type_of(model)
    if model_type in POSITION_ID_PACKING:
        return PackingPlan("position_ids")
    arch = f"model type {model_type!r}" if model_type else "an unknown architecture"
    return PackingPlan(
        "none",
        f"packing {packing}: {arch} is not known to keep packed examples apart by position "
        f"ids (known: {', '.join(sorted(POSITION_ID_PACKING))}); using dynamic padding "
        "(packing none) so attention never crosses examples",
    )


def resolve_packing(packing: str, task: str, kind: str, model: Any = None) -> str:
    """plan_packing's mode; a fallback is logged as a warning."""
    plan = plan_packing(packing, task, kind, model)
    if plan.note:
        log.warning(plan.note)
    return plan.mode


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


@dataclass
class PaddingCollator:
    """Pad to the batch's longest example (multiple of 8); right padding."""

    pad_token_id: int
    pad_to_multiple_of: int = 8
    max_length: int | None = None

    def __call__(self, batch: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(ex["input_ids"]) for ex in batch)
        width = _round_up(longest, self.pad_to_multiple_of)
        if self.max_length:
            width = min(width, max(self.max_length, longest))
        ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        per_token = not isinstance(batch[0]["labels"], int)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long) if per_token else None
        for i, ex in enumerate(batch):
            n = len(ex["input_ids"])
            ids[i, :n] = torch.tensor(ex["input_ids"])
            mask[i, :n] = 1
            if labels is not None:
                labels[i, :n] = torch.tensor(ex["labels"])
        out = {"input_ids": ids, "attention_mask": mask}
        out["labels"] = (
            labels if labels is not None else torch.tensor([ex["labels"] for ex in batch])
        )
        return out


def plan_rows(lengths: Sequence[int], max_len: int) -> list[list[int]]:
    """Indices of examples per packed row: best fit decreasing, O(n log n).

    Longest first; each example goes to the open row with the least room that still fits
    it (ties: the row opened last), else to a new row. Rooms are kept as a sorted list of
    distinct values (at most max_len + 1 of them) with a stack of rows per value, so a
    placement is one bisect instead of a scan over every open row (the old first-fit scan
    was quadratic: 24 s at 64k examples). Deterministic: ties in length keep input order.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-min(lengths[i], max_len), i))
    rows: list[list[int]] = []
    rooms: list[int] = []  # sorted distinct free room of open rows
    by_room: dict[int, list[int]] = {}  # room -> row numbers with exactly that room
    for i in order:
        need = min(lengths[i], max_len)
        at = bisect.bisect_left(rooms, need)
        if at == len(rooms):
            row, room = len(rows), max_len
            rows.append([])
        else:
            room = rooms[at]
            stack = by_room[room]
            row = stack.pop()
            if not stack:
                del by_room[room]
                rooms.pop(at)
        rows[row].append(i)
        left = room - need
        if left > 0:
            if left not in by_room:
                by_room[left] = []
                bisect.insort(rooms, left)
            by_room[left].append(row)
    return rows


def pack_position_ids(data: TokenizedSet, max_len: int) -> list[dict[str, list[int]]]:
    """Whole examples into rows of at most max_len tokens (best fit decreasing)."""
    packed: list[dict[str, list[int]]] = []
    for members in plan_rows([len(ids) for ids in data.input_ids], max_len):
        row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
        for i in members:
            ids, labels = data.input_ids[i][:max_len], list(data.labels[i][:max_len])
            labels[0] = IGNORE  # never predict across a boundary
            row["input_ids"] += ids
            row["labels"] += labels
            row["position_ids"] += list(range(len(ids)))
        packed.append(row)
    return packed


def pack_wrapped(data: TokenizedSet, max_len: int) -> list[dict[str, list[int]]]:
    """Concatenate everything and cut into max_len rows (attention crosses examples)."""
    ids = [t for ex in data.input_ids for t in ex]
    labels = [t for ex in data.labels for t in ex]
    return [
        {"input_ids": ids[s : s + max_len], "labels": labels[s : s + max_len],
         "position_ids": list(range(min(max_len, len(ids) - s)))}
        for s in range(0, len(ids), max_len)
    ]  # fmt: skip


@dataclass
class PackedCollator:
    """Stack packed rows into (batch, max_len); padding gets its own position run, label -100.

    With `cross_attention=False` (position_ids packing) no attention_mask is returned, so
    the model derives per-example blocks from position_ids; with True (wrapped) a plain
    attention mask is returned.
    """

    pad_token_id: int
    max_length: int
    cross_attention: bool = False

    def __call__(self, batch: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        n, width = len(batch), self.max_length
        ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE, dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, row in enumerate(batch):
            k = len(row["input_ids"])
            ids[i, :k] = torch.tensor(row["input_ids"])
            labels[i, :k] = torch.tensor(row["labels"])
            pos[i, :k] = torch.tensor(row["position_ids"])
            pos[i, k:] = torch.arange(width - k)
            mask[i, :k] = 1
        out = {"input_ids": ids, "labels": labels, "position_ids": pos}
        if self.cross_attention:
            out["attention_mask"] = mask
        return out
