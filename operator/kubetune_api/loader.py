"""Read FineTuneJob YAML/JSON files and validate them, collecting every error."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import SpecError, from_validation_error
from .spec import FineTuneJob


class InvalidSpecError(ValueError):
    """A FineTuneJob failed validation; `errors` lists every problem."""

    def __init__(self, source: str, errors: list[SpecError]) -> None:
        self.source = source
        self.errors = errors
        super().__init__("\n".join(f"{source}: {e}" for e in errors))


@dataclass
class LoadResult:
    source: str
    jobs: list[FineTuneJob] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)


def parse_job(data: Any, source: str = "<spec>") -> FineTuneJob:
    """Validate one decoded document; raise InvalidSpecError naming every bad field."""
    if not isinstance(data, dict):
        raise InvalidSpecError(source, [SpecError("", "a FineTuneJob must be a mapping")])
    try:
        return FineTuneJob.model_validate(data)
    except ValidationError as exc:
        raise InvalidSpecError(source, from_validation_error(exc, FineTuneJob)) from None


def parse_spec(spec: Any, name: str, namespace: str = "default") -> FineTuneJob:
    """Validate a bare spec (what the operator receives from kopf)."""
    return parse_job(
        {"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
         "metadata": {"name": name, "namespace": namespace}, "spec": spec},
        source=f"{namespace}/{name}",
    )  # fmt: skip


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--set spec.training.maxSteps=10`: values are parsed as YAML scalars."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidSpecError("--set", [SpecError(item, "expected key=value")])
        parts = key.split(".")
        if parts[0] != "spec" and parts[0] != "metadata":
            parts = ["spec", *parts]
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise InvalidSpecError("--set", [SpecError(key, f"{p} is not a mapping")])
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def read_documents(path: str | Path) -> list[Any]:
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        return [json.loads(text)]
    return [d for d in yaml.safe_load_all(text) if d is not None]


def load_file(path: str | Path, overrides: list[str] | None = None) -> LoadResult:
    """Every FineTuneJob in a file, or every error with its document number."""
    result = LoadResult(str(path))
    if Path(path).is_dir():
        msg = "cannot read file: it is a directory; name the YAML/JSON files in it"
        result.errors.append(SpecError("", msg))
        return result
    try:
        docs = read_documents(path)
    except (OSError, UnicodeDecodeError) as exc:
        result.errors.append(SpecError("", f"cannot read file: {exc}"))
        return result
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        result.errors.append(SpecError("", f"not valid YAML/JSON: {exc}".replace("\n", " ")))
        return result
    if not docs:
        result.errors.append(SpecError("", "no FineTuneJob document in the file"))
    for i, doc in enumerate(docs):
        try:
            if overrides:
                doc = apply_overrides(doc, overrides)
            result.jobs.append(parse_job(doc, str(path)))
        except InvalidSpecError as exc:
            tag = f"document {i + 1}: " if len(docs) > 1 else ""
            result.errors.extend(SpecError(e.path, tag + e.message) for e in exc.errors)
    return result


def load_job(path: str | Path, overrides: list[str] | None = None) -> FineTuneJob:
    """Exactly one FineTuneJob from a file, or InvalidSpecError."""
    res = load_file(path, overrides)
    if res.errors:
        raise InvalidSpecError(res.source, res.errors)
    if len(res.jobs) != 1:
        raise InvalidSpecError(
            res.source, [SpecError("", f"expected one FineTuneJob, found {len(res.jobs)}")]
        )
    return res.jobs[0]
