"""Turn pydantic errors into one line per problem: field path, then what to do."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class SpecError:
    path: str  # e.g. spec.training.learningRate ("" for whole-document problems)
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _allowed_keys(model: type[BaseModel] | None, loc: tuple[object, ...]) -> list[str]:
    """camelCase keys allowed at the parent of `loc` (for unknown-field messages)."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or isinstance(part, int):
            continue
        field = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
        ann = getattr(field, "annotation", None) if field else None
        current = _model_in(ann)
    if current is None:
        return []
    return sorted(f.alias or n for n, f in current.model_fields.items())


def _model_in(ann: object) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()):
        found = _model_in(arg)
        if found:
            return found
    return None


def from_validation_error(
    exc: ValidationError, model: type[BaseModel] | None = None, prefix: str = ""
) -> list[SpecError]:
    out: list[SpecError] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        msg = err["msg"]
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc)
            msg = "unknown field" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        elif kind == "missing":
            msg = "required field is missing"
        elif kind == "value_error":
            msg = msg.removeprefix("Value error, ")
            # Cross-field messages already name their field path; do not repeat it.
            head = msg.split(":", 1)[0]
            if head.startswith("spec.") and " " not in head:
                path, msg = head, msg.split(":", 1)[1].strip()
        elif "input" in err and kind not in ("model_type", "dict_type"):
            msg = f"{msg} (got {err['input']!r})"
        out.append(SpecError(path, msg))
    return out
