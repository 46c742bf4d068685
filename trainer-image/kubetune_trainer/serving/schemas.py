"""Request and response bodies of the completion endpoint.

Unknown fields are rejected (a typo such as `max_tokens` must not be silently ignored).
The prompt fields depend on the served dataset format: finance_qa takes question,
tickers and optional context (the layout it was trained on); qa takes question and
optional context; any other format takes a ready `prompt`.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_TICKER = re.compile(r"^[A-Z]{1,5}(\.[A-Z])?$")


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(default=None, min_length=1, description="Raw user message.")
    question: str | None = Field(default=None, min_length=1, description="finance_qa / qa.")
    tickers: list[str] | None = Field(
        default=None, min_length=1, max_length=5, description="finance_qa: 1-5 ticker symbols."
    )
    context: str | None = Field(default=None, description="Market data or passage, optional.")
    max_new_tokens: int | None = Field(default=None, ge=1, description="Tokens to generate.")
    temperature: float | None = Field(default=None, ge=0, le=5, description="0 = greedy.")
    top_p: float | None = Field(default=None, gt=0, le=1, description="Nucleus mass.")
    seed: int | None = Field(default=None, ge=0, description="Sampling seed.")

    @field_validator("tickers")
    @classmethod
    def _tickers(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            bad = [t for t in v if not _TICKER.match(t)]
            if bad:
                raise ValueError(f"{bad[0]!r} is not a ticker symbol (e.g. AAPL, BRK.B)")
        return v


class CompletionResponse(BaseModel):
    output: str
    prompt: str  # the formatted prompt the model saw
    prompt_tokens: int
    completion_tokens: int
    generation: dict[str, object]
    model: str
    parsed: dict[str, object] | None = None  # finance_qa: the answer split into sections
