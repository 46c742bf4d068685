"""The CRD's own CEL: immutability (changing, adding or removing a section), the name rule,
and what keeps the rules acceptable to Kubernetes (cost, size), evaluated with cel-python."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.crd_rules import expand
from kubetune_api.rules import NAME_RULE
from kubetune_api.rules_field_map import FIELD_MAP_RULE, FIELDS_BY_FORMAT_CEL
from tests.support.cel import (
    api_server_errors,
    job,
    program,
    python_errors,
    root_schema,
    rule_nodes,
    with_defaults,
)

ROOT = Path(__file__).resolve().parents[2]


# --- immutability ---------------------------------------------------------------------


def test_transition_rules_refuse_adding_removing_and_changing_a_section() -> None:
    spec = root_schema()["properties"]["spec"]
    optional = [k for k in spec["properties"] if k not in spec.get("required", [])]
    old = job({})
    checked = 0
    for section in optional:
        if section == "runPolicy" or "default" in spec["properties"][section]:
            continue  # mutable, or always present (the API server fills the default in)
        added = job({section: _non_default(section)})
        message = f"spec.{section} is immutable"
        assert (f"spec.{section}", f"{message}: it cannot be added or removed") in (
            api_server_errors(added, old=old)
        ), section
        assert (f"spec.{section}", f"{message}: it cannot be added or removed") in (
            api_server_errors(old, old=added)
        ), section
        assert api_server_errors(added, old=added) == []
        checked += 1
    assert checked >= 9


def test_transition_rules_refuse_a_change_and_allow_run_policy() -> None:
    old = job({"training.epochs": 2, "runPolicy.suspend": False})
    changed = job({"training.epochs": 3, "runPolicy.suspend": False})
    assert api_server_errors(changed, old=old) == [("spec.training", "spec.training is immutable")]
    for new in (
        job({"training.epochs": 2, "runPolicy.suspend": True}),
        job({"training.epochs": 2}),
    ):
        assert api_server_errors(new, old=old) == []
    other_model = copy.deepcopy(old)
    other_model["spec"]["model"]["base"] = "org/other"
    assert api_server_errors(other_model, old=old) == [("spec.model", "spec.model is immutable")]


def _non_default(section: str) -> dict[str, Any]:
    return {
        "adapter": {"r": 8}, "quantization": {"mode": "8bit"}, "training": {"epochs": 2},
        "evaluation": {"enabled": False}, "distributed": {"masterPort": 29501},
        "resources": {"cpu": "4"}, "output": {"uri": "./out"},
        "tracking": {"experiment": "x"}, "metrics": {"port": 9401},
    }.get(section, {})  # fmt: skip


# --- what Kubernetes accepts in a CRD -------------------------------------------------


def test_rules_stay_cheap_for_the_api_servers_cost_budget() -> None:
    # No rule under a list item or map value (its cost is multiplied by the list's length),
    # and no comprehension over the object's lists or maps (their length is unbounded): every
    # rule is a few comparisons of bounded fields. One comprehension runs over a literal list
    # (the format's fields, for field-map-keys), with an O(1) map lookup per name.
    literal_range = f"{FIELDS_BY_FORMAT_CEL}[{expand('{format}', FIELD_MAP_RULE.at)}]"
    nodes = rule_nodes(root_schema())
    assert nodes and all("[]" not in p and "{}" not in p for p, _ in nodes), nodes
    comprehensions = 0
    for _, node in nodes:
        for rule in node["x-kubernetes-validations"]:
            for expr in (rule["rule"], rule.get("messageExpression", "")):
                for loop in re.finditer(r"\.(all|exists|exists_one|map|filter)\(", expr):
                    assert expr[: loop.start()].endswith(literal_range), expr
                    comprehensions += 1
                # A regex only on a field with a small maxLength (metadata.name).
                assert "matches(" not in expr or expr == NAME_RULE.rule, expr
                if expr:
                    program(expr)  # compiles
            assert rule.get("message") or rule.get("messageExpression")
            assert "\n" not in rule.get("message", "")
            assert set(rule) <= {"rule", "message", "messageExpression", "fieldPath", "reason"}
    assert comprehensions == 1


def test_the_crd_stays_small() -> None:
    text = (ROOT / "crds" / "finetunejobs.kubetune.io.yaml").read_text()
    assert len(text) < 80_000  # kubectl apply's last-applied annotation caps at 256 KiB


def test_an_8bit_job_as_the_api_server_stores_it_still_validates() -> None:
    # The API server fills in quantType/doubleQuant/computeDtype defaults for every mode, so
    # the operator reads them back on an 8-bit job: only a non-default value is refused.
    doc = job({"quantization.mode": "8bit"})
    stored = with_defaults(doc, root_schema())
    assert stored["spec"]["quantization"]["quantType"] == "nf4"
    assert python_errors(stored) == [] and api_server_errors(stored) == []


@pytest.mark.parametrize("name", ["My_Job", "a" * 41, "1job", "job-", "jöb"])
def test_a_bad_name_is_refused_by_both_alike(name: str) -> None:
    doc = job({})
    doc["metadata"]["name"] = name
    python = python_errors(doc)
    assert python == [("metadata.name", NAME_RULE.message)]
    assert api_server_errors(doc) == python


def test_a_name_of_40_characters_is_accepted_by_both() -> None:
    doc = job({})
    doc["metadata"]["name"] = "a" * 39 + "1"
    assert python_errors(doc) == [] and api_server_errors(doc) == []
