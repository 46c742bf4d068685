"""Read FineTuneJob YAML/JSON files and validate them, collecting every error."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import MAX_ERRORS, SpecError, cap_errors, from_validation_error
from .safe_yaml import YamlLimitError, load_all, load_scalar, read_bounded, shorten
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


def parse_job(data: Any, source: str = "<spec>", *, by_name: bool = True) -> FineTuneJob:
    """Validate one decoded document; raise InvalidSpecError naming every bad field.

    by_name: also accept the Python (snake_case) field names, for Python callers. Files
    (load_file) and API bodies (parse_spec) are parsed with by_name=False: there a
    snake_case key is unknown, as it is to the CRD, which would prune it.
    """
    if not isinstance(data, dict):
        raise InvalidSpecError(source, [SpecError("", "a FineTuneJob must be a mapping")])
    try:
        return FineTuneJob.model_validate(data, by_alias=True, by_name=by_name)
    except ValidationError as exc:
        raise InvalidSpecError(source, from_validation_error(exc, FineTuneJob)) from None


def parse_spec(spec: Any, name: str, namespace: str = "default") -> FineTuneJob:
    """Validate a bare spec (what the operator receives from kopf)."""
    return parse_job(
        {"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
         "metadata": {"name": name, "namespace": namespace}, "spec": spec},
        source=f"{namespace}/{name}", by_name=False,
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
        try:
            node[parts[-1]] = load_scalar(raw)
        except (YamlLimitError, yaml.YAMLError) as exc:
            msg = shorten(str(exc).replace("\n", " "), 300)
            raise InvalidSpecError("--set", [SpecError(key, msg)]) from None
    return data


def read_documents(path: str | Path) -> list[Any]:
    """The non-empty documents of a YAML or JSON file (JSON is YAML: same loader and limits).

    Raises YamlLimitError (with the key path) or yaml.YAMLError for a file it refuses.
    """
    return [d for d in load_all(read_bounded(path)) if d is not None]


def load_file(path: str | Path, overrides: list[str] | None = None) -> LoadResult:
    """Every FineTuneJob in a file, or every error with its document number."""
    result = LoadResult(str(path))
    if Path(path).is_dir():
        msg = "cannot read file: it is a directory; name the YAML/JSON files in it"
        result.errors.append(SpecError("", msg))
        return result
    try:
        docs = read_documents(path)
    except OSError as exc:
        result.errors.append(SpecError("", shorten(f"cannot read file: {exc}", 300)))
        return result
    except YamlLimitError as exc:
        result.errors.append(SpecError(exc.path, exc.message))
        return result
    except yaml.YAMLError as exc:
        msg = shorten(f"not valid YAML/JSON: {exc}".replace("\n", " "), 300)
        result.errors.append(SpecError("", msg))
        return result
    if not docs:
        result.errors.append(SpecError("", "no FineTuneJob document in the file"))
    for i, doc in enumerate(docs):
        try:
            if overrides:
                doc = apply_overrides(doc, overrides)
            result.jobs.append(parse_job(doc, str(path), by_name=False))
        except InvalidSpecError as exc:
            tag = f"document {i + 1}: " if len(docs) > 1 else ""
            result.errors.extend(replace(e, message=tag + e.message) for e in exc.errors)
        if len(result.errors) > MAX_ERRORS:
            break  # a file of many bad documents: the first ones say enough
    result.errors = cap_errors(result.errors)
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
