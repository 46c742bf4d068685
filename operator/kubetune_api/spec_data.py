"""Where the training data comes from and how it is turned into examples."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

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


class ValidationSplit(SpecModel):
    source: str | None = Field(
        default=None, description="A separate validation file; overrides `fraction`."
    )
    fraction: float = Field(
        default=0.1, ge=0, lt=1, description="Share of the data held out for validation."
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
        default=None, description="Paper field used as the class label (BERT classification)."
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
        description="Rename source fields to the format's names, e.g. {question: Q}.",
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

    @model_validator(mode="after")
    def _options_match_format(self) -> DatasetSpec:
        for opt in ("trading", "papers", "rated"):
            if getattr(self, opt) is not None and self.format not in (opt, "auto"):
                raise ValueError(
                    f"`{opt}` options are given but format is {self.format!r}; "
                    f"set dataset.format: {opt} or remove dataset.{opt}"
                )
        return self
