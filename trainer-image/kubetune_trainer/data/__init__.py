"""Trainer data preparation: raw rows in many formats -> validated, fingerprinted records.

Entry points: `prepare(job)` (records.PreparedDataset), `tokenize` (records -> ids and
labels), `collate` (padding and packing collators), `sources` (local/s3 readers).
"""

from __future__ import annotations

from kubetune_trainer.records import PreparedDataset, PrepStats

from .formats.finance import format_finance_answer, parse_finance_answer
from .prepare import prepare

__all__ = [
    "PrepStats",
    "PreparedDataset",
    "format_finance_answer",
    "parse_finance_answer",
    "prepare",
]
