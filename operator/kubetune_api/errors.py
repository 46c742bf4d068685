"""Turn pydantic errors into one line per problem: field path, then what to do."""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ValidationError

from .safe_yaml import MAX_SHOWN, shorten

# Problems listed per file/object; the rest are counted. Every message and path is cut to a
# few hundred characters, so one bad file prints a few KB at most (and so does the operator's
# InvalidSpec condition).
MAX_ERRORS: Final = 10
_MAX_MESSAGE: Final = 400

# reprlib never walks more than a few items per level: the repr of a huge or alias-expanded
# value costs a few hundred characters, not its size.
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = MAX_SHOWN
_repr.maxlist = _repr.maxdict = _repr.maxtuple = _repr.maxset = 6
_repr.maxlevel = 3


_STRICT_TYPES: Final = ("int_type", "float_type", "bool_type")


def show(value: object) -> str:
    """A bounded repr of a user value, for error messages."""
    return shorten(_repr.repr(value))


@dataclass(frozen=True)
class SpecError:
    path: str  # e.g. spec.training.learningRate ("" for whole-document problems)
    message: str
    more: int = 0  # >0: this line stands for that many problems not shown

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


def cap_errors(errors: list[SpecError]) -> list[SpecError]:
    """At most MAX_ERRORS problems, then one line counting the others."""
    shown = [e for e in errors if not e.more]
    hidden = sum(e.more for e in errors) + max(0, len(shown) - MAX_ERRORS)
    if not hidden:
        return shown
    return [
        *shown[:MAX_ERRORS],
        SpecError("", f"... and {hidden} more problem(s) not shown", hidden),
    ]


def from_validation_error(
    exc: ValidationError, model: type[BaseModel] | None = None, prefix: str = ""
) -> list[SpecError]:
    out: list[SpecError] = []
    for err in exc.errors(include_url=False, include_context=False):
        loc = tuple(err["loc"])
        parts = (f"[{p}]" if isinstance(p, int) else shorten(str(p), 60) for p in loc)
        path = ".".join(parts).replace(".[", "[")
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
            msg = f"{msg} (got {show(err['input'])})"
            if kind in _STRICT_TYPES and isinstance(err["input"], str):
                msg += "; types are strict, as in the CRD: write the value without quotes"
        out.append(SpecError(path, shorten(msg, _MAX_MESSAGE)))
        if len(out) > MAX_ERRORS:
            break
    hidden = exc.error_count() - len(out)
    return cap_errors([*out, SpecError("", "", hidden)] if hidden else out)
