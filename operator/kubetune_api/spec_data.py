"""Where the training data comes from and how it is turned into examples."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ._base import SpecModel
from .uris import check_dataset_source, check_storage_uri

DatasetFormat = Literal[
    "auto", "instruction", "qa", "chat", "papers", "trading",
    "finance_qa", "rated", "preference", "ranked",
]  # fmt: skip
# Which formats each objective can train on ("auto" is checked after detection).
FORMATS_FOR_OBJECTIVE: dict[str, tuple[str, ...]] = {
    "sft": ("auto", "instruction", "qa", "chat", "papers", "trading", "finance_qa", "rated"),
    "dpo": ("auto", "preference", "rated"),
    "ranking": ("auto", "ranked"),
}

# Every field a format reads (what dataset.fieldMap may map to: rules_field_map.py). The
# trainer's detection keys (data.formats.FORMAT_KEYS) are a subset of these; a test keeps
# them in step.
FORMAT_FIELDS: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction", "input", "output", "prompt", "response", "completion"),
    "qa": ("question", "answer", "context"),
    "chat": ("messages",),
    "finance_qa": ("question", "answer", "rationale", "tickers", "citations",
                   "context_required", "risk_note", "context"),
    "preference": ("prompt", "chosen", "rejected"),
    "ranked": ("prompt", "responses"),
    "rated": ("prompt", "output", "rating"),
    "papers": ("title", "abstract", "full_text", "authors", "year", "quality", "doi"),
    "trading": ("date", "ticker", "open", "high", "low", "close", "volume"),
    "classification": ("text", "label"),  # format auto with model.task sequence_classification
}  # fmt: skip


def format_fields(fmt: str, label_field: str | None = None) -> tuple[str, ...]:
    """The fields fieldMap may map to for `fmt` (auto: any format's)."""
    if fmt == "auto":
        found = dict.fromkeys(f for fields in FORMAT_FIELDS.values() for f in fields)
        fields = tuple(found)
    else:
        fields = FORMAT_FIELDS[fmt]
    return (*fields, label_field) if label_field and fmt in ("papers", "auto") else fields


class ValidationSplit(SpecModel):
    source: str | None = Field(
        default=None, description="A separate validation file; overrides `fraction`."
    )
    fraction: float = Field(
        default=0.1, ge=0, lt=1, description="Share of the data held out for validation."
    )
    min_examples: int = Field(
        default=1,
        ge=1,
        description="Fewest validation examples for an evaluation: with fewer, preparation "
        "warns and the run reports no base/tuned comparison (and says why).",
    )

    @field_validator("source")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        return None if v is None else check_storage_uri(v, "dataset.validation.source")


class TradingOptions(SpecModel):
    news: str | None = Field(default=None, description="News JSONL (date, ticker, headline...).")
    window: int = Field(
        default=20, ge=5, le=500, description="Trading days of history per example."
    )
    horizon: int = Field(default=5, ge=1, le=250, description="Trading days to the realized label.")
    hold_band_pct: float = Field(
        default=1.0, ge=0, description="|forward return| below this percent is labelled hold."
    )
    max_gap_days: int = Field(
        default=5,
        ge=0,
        description="Business days (Mon-Fri) a ticker's prices may miss between two rows; "
        "more is a gap, handled by onGap.",
    )
    on_gap: Literal["error", "warn"] = Field(
        default="error",
        description="A gap is a bad row, the series cut there (error), or a counted "
        "warning (warn).",
    )
    market_close: str = Field(
        default="16:00",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="Local time (HH:MM) of the close: news stamped at or after it counts "
        "from the next trading day.",
    )

    @field_validator("news")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        return None if v is None else check_storage_uri(v, "dataset.trading.news")


class PapersOptions(SpecModel):
    chunk_overlap: int = Field(default=64, ge=0, description="Tokens shared by adjacent chunks.")
    min_quality: float | None = Field(
        default=None, description="Drop papers whose quality score is below this."
    )
    drop_citations: bool = Field(default=True, description="Remove bracketed citations like [12].")
    label_field: str | None = Field(
        default=None,
        max_length=128,  # so the fieldMap message that lists it stays whole (rules_field_map)
        description="Paper field used as the class label (BERT classification).",
    )


class RatedOptions(SpecModel):
    min_rating: float = Field(default=4.0, description="Ratings at or above this are kept for SFT.")
    pair_margin: float = Field(
        default=1.0, gt=0, description="Minimum rating gap between chosen and rejected (DPO)."
    )


class DatasetSpec(SpecModel):
    source: str = Field(
        description="Training data: a local file or folder, s3://bucket/key, or "
        "dataset://NAME[@vN] (registered with `kubetune datasets register`; latest without @).",
        min_length=1,
    )
    format: DatasetFormat = Field(
        default="auto", description="Record layout; auto detects it from the first rows."
    )
    field_map: dict[str, str] = Field(
        default_factory=dict,
        description="Read the format's fields from other source fields: {format field: "
        "source field}, e.g. {question: Q}. A source field may be a dotted path into "
        "nested objects (data.q; a number indexes a list: turns.0.text).",
    )
    template: Literal["auto", "chat", "alpaca", "plain"] = Field(
        default="auto",
        description="Prompt layout: the tokenizer's chat template (chat), a documented "
        "Alpaca-style template, or plain concatenation. auto uses chat when available.",
    )
    system_prompt: str | None = Field(default=None, description="System message for chat layouts.")
    validation: ValidationSplit = Field(
        default_factory=ValidationSplit, description="How validation data is chosen."
    )
    max_seq_length: int = Field(default=512, ge=16, le=131072, description="Tokens per example.")
    packing: Literal["auto", "none", "position_ids", "wrapped"] = Field(
        default="auto",
        description="none pads each batch; position_ids packs examples without attention "
        "crossing them; wrapped concatenates and lets attention cross (pretraining-style).",
    )
    completion_only_loss: bool = Field(
        default=True, description="Compute loss on the answer only, not the prompt."
    )
    streaming: bool = Field(default=False, description="Read the source lazily (large files).")
    encoding: str = Field(
        default="utf-8",
        description="Text encoding of the data files (ASCII-compatible: utf-8, latin-1, "
        "cp1252...). A UTF-8 byte order mark is dropped.",
    )
    on_decode_error: Literal["error", "replace"] = Field(
        default="error",
        description="Bytes invalid in `encoding` and lone surrogate escapes: stop with "
        "file:line and byte offset (error), or read them as U+FFFD with a counted warning.",
    )
    dedupe: bool = Field(
        default=False,
        description="Remove rows exactly equal to an earlier row (they are always counted "
        "and reported).",
    )
    bad_rows: Literal["fail", "skip"] = Field(
        default="fail", description="Stop on invalid rows (fail) or drop and count them (skip)."
    )
    max_errors: int = Field(default=50, ge=1, description="Bad rows listed before stopping.")
    max_examples: int | None = Field(default=None, ge=1, description="Use at most this many.")
    trading: TradingOptions | None = Field(default=None, description="Options for format trading.")
    papers: PapersOptions | None = Field(default=None, description="Options for format papers.")
    rated: RatedOptions | None = Field(default=None, description="Options for format rated.")

    @field_validator("source")
    @classmethod
    def _uri(cls, v: str) -> str:
        return check_dataset_source(v, "dataset.source")

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str) -> str:
        try:  # utf-8-sig: utf-8 whose BOM is dropped anyway
            ascii_compatible = "\n,{}".encode(v).removeprefix(b"\xef\xbb\xbf") == b"\n,{}"
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r} (e.g. utf-8, latin-1, cp1252)") from None
        if not ascii_compatible:
            raise ValueError(f"encoding {v!r} is not ASCII-compatible; convert the files to utf-8")
        return v
