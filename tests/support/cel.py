"""Evaluate the CRD's x-kubernetes-validations with cel-python, the way the API server does.

The API server first fills in the schema's defaults (structural defaulting), then runs every
rule whose object is present; a transition rule (one naming oldSelf) runs on an update only,
when the old object holds that node too. A rule is reported as "<path>: <message>", the path
being the rule's node plus its fieldPath, as `kubectl apply` prints it.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import celpy
from celpy import celtypes

from kubetune_api.crd import build_crd
from kubetune_api.loader import InvalidSpecError, parse_job
from tests.support.spec_cases import BASE

Found = list[tuple[str, str]]  # (path, message)


@cache
def root_schema() -> dict[str, Any]:
    """The CRD's schema (one shared copy: callers must not change it)."""
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def with_defaults(obj: Any, schema: dict[str, Any]) -> Any:
    """The object as the API server stores it: absent fields that have a default filled in,
    inside every present object (a copy)."""
    obj = copy.deepcopy(obj)
    _default(obj, schema)
    return obj


def _default(obj: Any, schema: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for key, prop in schema.get("properties", {}).items():
            if key not in obj and "default" in prop:
                obj[key] = copy.deepcopy(prop["default"])
            if key in obj:
                _default(obj[key], prop)
        if isinstance(schema.get("additionalProperties"), dict):
            for value in obj.values():
                _default(value, schema["additionalProperties"])
    elif isinstance(obj, list) and "items" in schema:
        for item in obj:
            _default(item, schema["items"])


_ENV = celpy.Environment()


@cache
def program(expr: str) -> celpy.Runner:
    return _ENV.program(_ENV.compile(expr))


def evaluate(expr: str, self: Any, old: Any = None) -> Any:
    activation = {"self": celpy.json_to_cel(self)}
    if old is not None:
        activation["oldSelf"] = celpy.json_to_cel(old)
    result = program(expr).evaluate(activation)
    if isinstance(result, Exception):
        raise AssertionError(f"{expr!r} failed to evaluate: {result}")
    return result


def check_rule(rule: dict[str, Any], path: str, self: Any, old: Any = None) -> Found:
    """[] if the rule holds, else [(path, message)]."""
    ok = evaluate(rule["rule"], self, old)
    assert isinstance(ok, celtypes.BoolType), f"{rule['rule']!r} gave {ok!r}, not a bool"
    if ok:
        return []
    if "messageExpression" in rule:
        message = evaluate(rule["messageExpression"], self, old)
        assert isinstance(message, str), rule["messageExpression"]
    else:
        message = rule["message"]
    return [((path + rule.get("fieldPath", "")).removeprefix("."), str(message))]


def cel_errors(new: Any, old: Any = None, schema: dict[str, Any] | None = None) -> Found:
    """Every rule the object breaks (old: the stored object, for an update)."""
    return _walk(schema or root_schema(), new, old, "")


def _walk(schema: dict[str, Any], new: Any, old: Any, path: str) -> Found:
    found: Found = []
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            if old is not None:
                found += check_rule(rule, path, new, old)
        else:
            found += check_rule(rule, path, new)
    if isinstance(new, dict):
        for key, prop in schema.get("properties", {}).items():
            if key in new:
                sub_old = old.get(key) if isinstance(old, dict) else None
                found += _walk(prop, new[key], sub_old, f"{path}.{key}" if path else key)
    return found


def rule_nodes(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(path, node) of every schema node holding rules; `[]`/`{}` mark list items/map values."""
    out = [(path, schema)] if "x-kubernetes-validations" in schema else []
    for key, prop in schema.get("properties", {}).items():
        out += rule_nodes(prop, f"{path}.{key}" if path else key)
    if "items" in schema:
        out += rule_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += rule_nodes(schema["additionalProperties"], f"{path}{{}}")
    return out


# --- FineTuneJobs to check ------------------------------------------------------------

ABSENT = object()  # a field left out of the spec


def job(changes: dict[str, Any]) -> dict[str, Any]:
    """BASE with `changes` ({"training.epochs": 2}: paths below spec) written in."""
    doc = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        if value is ABSENT:
            continue
        node = doc["spec"]
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = copy.deepcopy(value)
    return doc


def python_errors(doc: dict[str, Any]) -> Found:
    """What `kubetune validate` reports."""
    try:
        parse_job(doc, by_name=False)
    except InvalidSpecError as exc:
        return [(e.path, e.message) for e in exc.errors]
    return []


def api_server_errors(doc: dict[str, Any], old: dict[str, Any] | None = None) -> Found:
    """What the API server reports: rules run on the defaulted object (and the defaulted old
    one); the same answer on the object as written, where every section may be absent."""
    schema = root_schema()
    defaulted = cel_errors(with_defaults(doc, schema), old and with_defaults(old, schema), schema)
    assert cel_errors(doc, old, schema) == defaulted
    return defaulted
