"""The CRD's CEL (`x-kubernetes-validations`): rules.py's cross-field rules and immutability.

A template's `{a.b}` becomes `(has(self.a) && has(self.a.b) ? self.a.b : <default>)`, the
default taken from the pydantic model (the API server fills defaults in before it evaluates
a rule, but a section itself may be absent), `{?a.b}` becomes
`has(self.a) && has(self.a.b)`, and `{=name}` the rule's derived value (its own template).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .errors import _model_in
from .rule_core import PLACEHOLDER, Derived, Rule, cel_literal, cel_string
from .rules import NAME_RULE, RULES
from .spec import FineTuneJobSpec


def _field(model: type[BaseModel], key: str) -> FieldInfo:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    raise KeyError(f"{model.__name__} has no field {key!r}")


def section_model(at: str) -> type[BaseModel]:
    """The model of the spec section a rule sits on ("spec.training" -> TrainingSpec)."""
    model: type[BaseModel] | None = FineTuneJobSpec
    for key in at.split(".")[1:]:
        assert model is not None
        model = _model_in(_field(model, key).annotation)
    if model is None:
        raise ValueError(f"{at} is not a spec section")
    return model


def _access(model: type[BaseModel], path: str, presence: bool) -> str:
    keys = path.split(".")
    leaf: FieldInfo | None = None
    current: type[BaseModel] | None = model
    for i, key in enumerate(keys):
        if current is None:
            raise ValueError(f"{path}: {'.'.join(keys[:i])} is not a section")
        leaf = _field(current, key)
        current = _model_in(leaf.annotation)
    assert leaf is not None
    prefixes = ["self." + ".".join(keys[: i + 1]) for i in range(len(keys))]
    if presence:
        return " && ".join(f"has({p})" for p in prefixes)
    default = leaf.get_default(call_default_factory=True, validated_data={})
    if default is None or leaf.is_required():  # read after a {?...} guard / always present
        return prefixes[-1]
    # The API server fills the default in, but the rule must not depend on it.
    guard = " && ".join(f"has({p})" for p in prefixes)
    return f"({guard} ? {prefixes[-1]} : {cel_literal(default)})"


def expand(template: str, at: str, values: dict[str, Derived] | None = None) -> str:
    """A rule template as CEL for the section at `at` (`values`: the rule's derived values)."""
    if not PLACEHOLDER.search(template):
        return template
    model = section_model(at)

    def sub(m: re.Match[str]) -> str:
        if m.group(1) == "=":
            return f"({expand((values or {})[m.group(2)].cel, at)})"
        return _access(model, m.group(2), m.group(1) == "?")

    return PLACEHOLDER.sub(sub, template)


def message_expression(template: str, at: str, values: dict[str, Derived] | None = None) -> str:
    """CEL building the message: literal text + string(<field>) + (<derived value>) + ..."""
    model = section_model(at)
    parts: list[str] = []
    pos = 0
    for m in PLACEHOLDER.finditer(template):
        if m.start() > pos:
            parts.append(cel_string(template[pos : m.start()]))
        if m.group(1) == "=":
            parts.append(expand(m.group(0), at, values))
        else:
            value = _access(model, m.group(2), False)
            parts.append(f"string({value[1:-1] if value.startswith('(') else value})")
        pos = m.end()
    if pos < len(template):
        parts.append(cel_string(template[pos:]))
    return " + ".join(parts)


def validation(rule: Rule) -> dict[str, Any]:
    """The x-kubernetes-validations entry of one rule."""
    out: dict[str, Any] = {"rule": expand(rule.rule, rule.at, rule.values)}
    if PLACEHOLDER.search(rule.message):
        out["messageExpression"] = message_expression(rule.message, rule.at, rule.values)
    else:
        out["message"] = rule.message
    if rule.field:
        out["fieldPath"] = rule.field
    if rule.reason != "FieldValueInvalid":  # the API server's default
        out["reason"] = rule.reason
    return out


def immutability(spec: dict[str, Any], mutable: tuple[str, ...]) -> None:
    """`self == oldSelf` on every immutable section, and, on the spec, a rule per optional
    section: a transition rule on a property runs only when both objects hold it, so adding
    or removing the section would pass it."""
    required = set(spec.get("required", ()))
    presence: list[dict[str, Any]] = []
    for name, prop in spec["properties"].items():
        if name in mutable:
            continue
        message = f"spec.{name} is immutable"
        prop.setdefault("x-kubernetes-validations", []).append(
            {"rule": "self == oldSelf", "message": message}
        )
        if name not in required and "default" not in prop:
            presence.append(
                {
                    "rule": f"has(self.{name}) == has(oldSelf.{name})",
                    "message": f"{message}: it cannot be added or removed",
                    "fieldPath": f".{name}",
                }
            )
    spec.setdefault("x-kubernetes-validations", []).extend(presence)


def add_validations(spec: dict[str, Any], mutable: tuple[str, ...]) -> dict[str, Any]:
    """Put the immutability rules (all but the `mutable` sections) and every rule of rules.py
    on the spec schema."""
    immutability(spec, mutable)
    for rule in RULES:
        node = spec
        for key in rule.at.split(".")[1:]:
            node = node["properties"][key]
        node.setdefault("x-kubernetes-validations", []).append(validation(rule))
    return spec


def object_validations() -> list[dict[str, Any]]:
    """The rules on the object itself (metadata.name)."""
    return [validation(NAME_RULE)]
