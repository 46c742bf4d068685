"""Trainer data preparation: raw rows in many formats -> validated, fingerprinted records.

Entry points: `prepare(job)` (records.PreparedDataset, in memory), `prepare_to_files(job,
folder)` (the same records streamed to train/validation JSONL, records.PreparedFiles),
`tokenize` (records -> ids and labels), `collate` (padding and packing collators),
`sources` (local/s3 readers). Formats and rules: docs/data-formats.md.
"""

from __future__ import annotations

from kubetune_trainer.records import PreparedDataset, PreparedFiles, PrepStats

from .formats.finance import format_finance_answer, parse_finance_answer
from .prepare import prepare, prepare_to_files

__all__ = [
    "PrepStats",
    "PreparedDataset",
    "PreparedFiles",
    "format_finance_answer",
    "parse_finance_answer",
    "prepare",
    "prepare_to_files",
]
