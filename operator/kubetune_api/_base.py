"""The base model every spec object derives from: camelCase in YAML, strict keys and types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from .kube_names import anchored


class SpecModel(BaseModel):
    """Unknown keys are an error; YAML uses camelCase, Python snake_case.

    Types are strict, as the CRD's are: "10" is not an integer and true is not a number
    (an int is still a valid float). Numbers must be finite. Files and API bodies are
    parsed with by_name=False (loader.parse_job), so a snake_case key is unknown there,
    as it is to the API server; Python code may still build models by field name.
    """

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        validate_default=True,
        strict=True,
        allow_inf_nan=False,
    )


def crd_pattern(pattern: str, max_length: int | None = None) -> dict[str, Any]:
    """json_schema_extra giving the CRD the rule a Python validator checks (with a better
    message than a pattern mismatch)."""
    extra: dict[str, Any] = {"pattern": anchored(pattern)}
    if max_length is not None:
        extra["maxLength"] = max_length
    return extra


class StatusModel(BaseModel):
    """The status the operator writes: camelCase, no unknown keys, but lax types (it is read
    back from the API server and built from scraped metrics, not written by users)."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        validate_default=True,
    )
