"""Packed rows read lazily from the Arrow tokens, with the packing plan stored beside them.

The plan (collate.plan_rows, best fit decreasing) is computed once, when the split is
tokenized, and saved as `plan.npz` (which examples, in order, and where each row starts):
a retry, a resume and every rank read it instead of packing again. A row is assembled
when the DataLoader asks for it, from one Arrow take of its examples, exactly as
collate.pack_position_ids / pack_wrapped build it in memory (tested).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .arrow_tokens import ArrowTokens
from .collate import plan_rows
from .tokenize import IGNORE

PLAN = "plan.npz"


def save_plan(folder: Path, lengths: Any, max_len: int) -> None:
    rows = plan_rows(lengths.tolist() if hasattr(lengths, "tolist") else lengths, max_len)
    order = np.fromiter((i for r in rows for i in r), dtype=np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    with open(folder / PLAN, "wb") as f:  # np.savez would add .npz to a str path
        np.savez(f, order=order, offsets=offsets, max_len=np.int64(max_len))


class PackedRows:
    """position_ids packing: whole examples per row, positions restart, first label -100."""

    def __init__(self, tokens: ArrowTokens, folder: Path, max_len: int) -> None:
        with np.load(folder / PLAN) as plan:
            if int(plan["max_len"]) != max_len:
                raise ValueError(f"{folder / PLAN}: planned for {int(plan['max_len'])} tokens")
            self.order, self.offsets = plan["order"], plan["offsets"]
        self.tokens, self.max_len = tokens, max_len

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def members(self, r: int) -> list[int]:
        return self.order[self.offsets[r] : self.offsets[r + 1]].tolist()

    def __getitem__(self, r: int) -> dict[str, list[int]]:
        got = self.tokens.rows(self.members(int(r)))
        row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
        for ids, labels in zip(got["input_ids"], got["labels"], strict=True):
            ids, labels = ids[: self.max_len], list(labels[: self.max_len])
            labels[0] = IGNORE  # never predict across a boundary
            row["input_ids"] += ids
            row["labels"] += labels
            row["position_ids"] += list(range(len(ids)))
        return row


class WrappedRows:
    """wrapped packing: every example concatenated, cut into max_len rows (attention crosses
    examples); row r is tokens [r*max_len, (r+1)*max_len) of that stream."""

    def __init__(self, tokens: ArrowTokens, max_len: int) -> None:
        lengths = tokens.length_array.astype(np.int64)
        self.ends = np.cumsum(lengths)
        self.starts = self.ends - lengths
        self.total = int(self.ends[-1]) if len(lengths) else 0
        self.tokens, self.max_len = tokens, max_len

    def __len__(self) -> int:
        return -(-self.total // self.max_len)

    def __getitem__(self, r: int) -> dict[str, list[int]]:
        start = int(r) * self.max_len
        end = min(start + self.max_len, self.total)
        first = int(np.searchsorted(self.ends, start, side="right"))
        last = int(np.searchsorted(self.starts, end, side="left"))
        got = self.tokens.rows(list(range(first, last)))
        ids = [t for x in got["input_ids"] for t in x]
        labels = [t for x in got["labels"] for t in x]
        skip = start - int(self.starts[first])
        return {"input_ids": ids[skip : skip + end - start],
                "labels": labels[skip : skip + end - start],
                "position_ids": list(range(end - start))}  # fmt: skip
