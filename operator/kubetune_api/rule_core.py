"""What a cross-field rule is (rules.py holds the table; crd_rules.py turns it into CEL).

In a template, `{a.b}` is the value of field a.b below the rule's section (its default when
a.b or a section on the way is absent), `{?a.b}` whether it is present, and `{=name}` a value
the rule derives itself (`Rule.values`: a CEL template and the same in Python), for a message
that depends on more than one field's value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic.alias_generators import to_snake

Reason = Literal["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired"]
# {a.b}: the value of a.b (its default if absent); {?a.b}: whether a.b is present;
# {=name}: the rule's derived value `name`.
PLACEHOLDER: Final = re.compile(r"\{([?=]?)([A-Za-z][A-Za-z0-9.]*)\}")


@dataclass(frozen=True)
class Derived:
    """A string a rule's message shows: `cel` (a template, a CEL string expression) and
    `python` (the same from the pydantic section) must give the same text."""

    cel: str
    python: Callable[[Any], str]


@dataclass(frozen=True)
class Rule:
    """One cross-field rule. `self` (CEL) and the object `check` receives (Python) are the
    spec section at `at`; `field` is the path of the offending field below it."""

    name: str
    at: str  # "spec" or "spec.<section>" ("" for the object: NAME_RULE)
    field: str  # ".dataset.format" (Kubernetes' fieldPath; "" is `at` itself)
    rule: str  # CEL template, true when the object is valid
    message: str  # template: {a.b} is filled in with the value, {=name} with values[name]
    check: Callable[[Any], bool]  # Python, true when the object is valid
    reason: Reason = "FieldValueInvalid"
    values: dict[str, Derived] = field(default_factory=dict, hash=False)

    @property
    def path(self) -> str:
        return (self.at + self.field).removeprefix(".")

    def render(self, obj: Any) -> str:
        """The message with its placeholders filled in from a pydantic section."""

        def value(match: re.Match[str]) -> str:
            if match.group(1) == "=":
                return self.values[match.group(2)].python(obj)
            node = obj
            for key in match.group(2).split("."):
                node = getattr(node, to_snake(key))
            return str(node)

        return PLACEHOLDER.sub(value, self.message)


def cel_string(text: str) -> str:
    """A CEL string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cel_literal(value: Any) -> str:
    """A CEL literal for a default value (bool, int, string, or an empty map or list)."""
    if isinstance(value, dict | list) and not value:
        return "{}" if isinstance(value, dict) else "[]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return cel_string(value)
    raise ValueError(f"no CEL literal for {value!r}")


def cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(cel_string(v) for v in values) + "]"
