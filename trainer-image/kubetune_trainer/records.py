"""The record shapes data preparation hands to training (the data <-> engine contract).

Every dataset format is normalised into exactly one of these kinds, chosen by the
format and the objective; training never sees a raw source row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

RecordKind = Literal["sft", "text", "preference", "ranked", "classification"]


class SFTRecord(TypedDict, total=False):
    prompt: str  # formatted prompt (template applied), loss masked by default
    completion: str  # the target text the model learns
    messages: list[dict[str, str]]  # chat formats keep messages; prompt/completion derived
    meta: dict[str, Any]  # provenance (source line, ids, realized return...) for eval


class TextRecord(TypedDict, total=False):
    text: str  # causal-LM text (papers chunks)
    meta: dict[str, Any]


class PreferenceRecord(TypedDict, total=False):
    prompt: str
    chosen: str
    rejected: str
    meta: dict[str, Any]


class RankedRecord(TypedDict, total=False):
    prompt: str
    responses: list[str]  # best first
    meta: dict[str, Any]


class ClassificationRecord(TypedDict, total=False):
    text: str
    label: int
    meta: dict[str, Any]


@dataclass
class PrepStats:
    read: int = 0
    kept: int = 0
    skipped: int = 0  # bad rows dropped (policy skip)
    truncated: int = 0
    filtered: int = 0  # valid rows left out on purpose (rating, quality, no pair)
    problems: list[str] = field(default_factory=list)  # "file:line: reason"
    filtered_by: dict[str, int] = field(default_factory=dict)  # filtered rows by rule
    duplicates: int = 0  # rows equal to an earlier row (removed with dataset.dedupe)
    warned: int = 0  # rows kept with a warning (replaced bytes, gaps...)
    warnings: list[str] = field(default_factory=list)  # "file:line: message", the first ones
    # Set when validation holds fewer than validation.minExamples: why, and that no
    # base/tuned comparison is made.
    validation_note: str | None = None


@dataclass
class PreparedDataset:
    kind: RecordKind
    format: str  # the resolved dataset format (after auto detection)
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    fingerprint: str  # sha256 of the prepared records, for lineage
    stats: PrepStats = field(default_factory=PrepStats)
    label_names: list[str] = field(default_factory=list)  # classification only
    # Papers chunks were sized with the base model's tokenizer (else a chars/token estimate).
    exact_chunks: bool = False


@dataclass
class PreparedFiles:
    """What `prepare_to_files` wrote: the splits as JSONL (one record a line, keys sorted)."""

    kind: RecordKind
    format: str
    train_path: str
    validation_path: str
    train_examples: int
    validation_examples: int
    fingerprint: str  # equal to PreparedDataset.fingerprint for the same job and data
    stats: PrepStats = field(default_factory=PrepStats)
    label_names: list[str] = field(default_factory=list)
    exact_chunks: bool = False
